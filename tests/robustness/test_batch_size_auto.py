"""``--batch-size auto``: halving on out-of-memory, the trials recorded, the CPU's default."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustness.cli import main
from robustness.core.batchsize import CPU_DEFAULT, auto_batch_size, is_out_of_memory, search, trial_batch
from robustness.core.errors import RobustnessError
from robustness.core.model import ModelUnderTest


class FitsUpTo(nn.Module):
    """A classifier that runs out of memory (as CUDA would say it) above ``limit`` samples."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__()
        self.limit, self.message = limit, message
        self.linear = nn.Linear(4, 3)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.shape[0])
        if x.shape[0] > self.limit:
            if self.message:
                raise RuntimeError(self.message)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.linear(x.flatten(1))


def test_search_halves_until_a_batch_fits_and_records_every_trial():
    net = FitsUpTo(100)
    model = ModelUnderTest(net, device="cpu")
    example = torch.rand(3, 4)
    released = []
    found = search(
        lambda size: trial_batch(model, example, size, backward=True),
        1000,
        on_failure=lambda: released.append(1),
    )
    assert found.size == 62 and found.tried == [
        (1000, False),
        (500, False),
        (250, False),
        (125, False),
        (62, True),
    ]
    assert net.seen == [1000, 500, 250, 125, 62] and len(released) == 4
    assert found.to_dict()["tried"][-1] == {"size": 62, "fitted": True}
    assert all(p.grad is None for p in net.parameters())  # input gradients only


def test_the_first_size_that_fits_is_kept():
    found = search(lambda size: None, 256)
    assert found.size == 256 and found.tried == [(256, True)]


def test_other_errors_are_not_taken_for_out_of_memory():
    model = ModelUnderTest(FitsUpTo(0, message="mat1 and mat2 shapes cannot be multiplied"), device="cpu")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        search(lambda size: trial_batch(model, torch.rand(2, 4), size, backward=False), 64)
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("cuBLAS error: CUBLAS_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_not_even_one_sample_fits():
    model = ModelUnderTest(FitsUpTo(0), device="cpu")
    with pytest.raises(RobustnessError, match="a batch of one sample does not fit") as err:
        search(lambda size: trial_batch(model, torch.rand(1, 4), size, backward=False), 8)
    assert err.value.field == "--batch-size"


def test_on_the_cpu_auto_is_the_default_capped_by_the_data():
    model = ModelUnderTest(FitsUpTo(10**6), device="cpu")
    found = auto_batch_size(model, torch.rand(2, 4), 10_000, backward=True)
    assert found.size == CPU_DEFAULT and found.tried == [] and "no out-of-memory signal" in found.how
    assert auto_batch_size(model, torch.rand(2, 4), 40, backward=True).size == 40


def test_cli_records_the_batch_size_it_used(capsys):
    base = ["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "cpu", "--json"]
    assert main(["evaluate", *base, "--batch-size", "auto"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["batch_size"] == CPU_DEFAULT and res["batch_size_search"]["batch_size"] == CPU_DEFAULT
    assert (
        main(
            [
                "attack",
                *base,
                "--attack",
                "fgsm",
                "--eps",
                "0.1",
                "--n-examples",
                "30",
                "--batch-size",
                "auto",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["batch_size"] == 30 and row["batch_size_search"]["tried"] == []
    with pytest.raises(SystemExit) as usage:
        main(["evaluate", *base, "--batch-size", "huge"])
    assert usage.value.code == 2 and "must be auto or a positive integer" in capsys.readouterr().err
    assert main(["evaluate", *base, "--batch-size", "0"]) == 2
    assert "--batch-size must be > 0" in capsys.readouterr().err


class Wide(nn.Module):
    """About 40 MB of activations per sample (its inputs repeated 800 times): 4096 of them do not
    fit in the 139 GB of an H200."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.flatten(1).repeat(1, 800).relu()
        return self.linear(wide.mean(dim=1, keepdim=True))


@pytest.mark.gpu
def test_on_cuda_the_search_finds_a_batch_that_fits():
    model = ModelUnderTest(Wide(), device="cuda")
    example = torch.rand(4, 3, 64, 64)
    found = auto_batch_size(model, example, 100_000, backward=True)
    assert found.tried[0] == (4096, False) and found.tried[-1][1] is True
    assert found.size == found.tried[-1][0] // 2  # the search hit the limit: halved for the attack
    trial_batch(model, example, found.size, backward=True)  # the size chosen runs
