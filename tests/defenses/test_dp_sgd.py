"""DP-SGD through the one trainer: the spent epsilon is right, resumes exactly, and is never under-reported."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn

from defenses import TrainConfig, Trainer
from defenses import checkpoint as ckpt
from defenses.objectives.dp_sgd import DPSGD, unsupported_layers
from robustness.cli import main
from robustness.core.data import load_data
from robustness.core.errors import ConfigError, ModelError, UsageError
from robustness.core.model import ModelUnderTest, load_model
from robustness.zoo import DigitsCNN

TARGET = 3.0
HARDEN = ["harden", "--model", "zoo:digits-cnn", "--data", "builtin:digits:train", "--device", "cpu"]


@pytest.fixture(scope="module")
def digits_train():
    return load_data("builtin:digits:train")


def dp_trainer(epochs: int = 3, module: nn.Module | None = None, **options) -> Trainer:
    torch.manual_seed(0)
    params = {"target_epsilon": TARGET, **options.pop("params", {})}
    config = TrainConfig(
        method="dp-sgd", epochs=epochs, batch_size=64, lr=1e-2, seed=0, params=params, **options
    )
    return Trainer(
        module or DigitsCNN(), config, architecture={"factory": "zoo:digits-cnn"}, device="cpu", verbose=False
    )


@pytest.fixture(scope="module")
def full_run(digits_train, tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "full"
    return dp_trainer().fit(digits_train, output=out), out


def test_spent_epsilon_is_within_the_target_and_close_to_it(full_run, digits_test):
    result, out = full_run
    card = json.loads((out / "model.json").read_text())
    assert TARGET - 0.05 <= card["epsilon"] <= TARGET
    assert card["delta"] == 1e-5
    privacy = card["training"]["privacy"]
    # 1294 training samples (10% held out), batch 64: 21 Poisson steps per epoch at q = 1/21.
    assert privacy["n_train"] == 1294 and privacy["sample_rate"] == pytest.approx(1 / 21)
    assert privacy["steps"] == 3 * 21 and privacy["sampling"] == "poisson"
    assert privacy["noise_multiplier"] > 0.5 and privacy["accountant"] == "prv"
    # The epsilon spent grows every epoch and ends at the card's.
    spent = [row["epsilon"] for row in result.log]
    assert spent == sorted(spent) and spent[0] < spent[-1] == pytest.approx(card["epsilon"], abs=1e-5)
    # Private training keeps the last epoch: choosing on the validation split would leak it.
    assert result.metrics["selection"] == "last epoch" and result.metrics["selected_epoch"] == 3
    model = load_model(str(out), device="cpu")
    accuracy = float((model.predict(digits_test.x).cpu() == digits_test.y).float().mean())
    assert accuracy > 0.6, accuracy  # measured 0.735 after 3 epochs; chance is 0.10


def test_training_leaves_no_hooks_or_per_sample_gradients(full_run):
    result, _ = full_run
    net = result.model.net
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())
    assert not any(hasattr(p, "grad_sample") or hasattr(p, "summed_grad") for p in net.parameters())


def test_killed_and_resumed_run_spends_the_same_epsilon(full_run, digits_train, tmp_path, monkeypatch):
    full, full_out = full_run
    real = ckpt.save

    def save_then_die(folder, state):
        real(folder, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        dp_trainer().fit(digits_train, output=tmp_path / "cut")
    monkeypatch.setattr(ckpt, "save", real)
    resumed = dp_trainer().fit(digits_train, output=tmp_path / "cut", resume=True)
    assert resumed.extra["epsilon"] == full.extra["epsilon"]
    assert [r["epsilon"] for r in resumed.log] == [r["epsilon"] for r in full.log]
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((tmp_path / "cut" / "model.json").read_text())
    assert card["training"]["privacy"]["steps"] == 3 * 21


def test_resume_without_the_accounting_is_refused(digits_train, tmp_path, monkeypatch):
    real = ckpt.save

    def save_without_accounting(folder, state):
        real(folder, {k: v for k, v in state.items() if k != "objective"})
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "save", save_without_accounting)
    with pytest.raises(KeyboardInterrupt):
        dp_trainer(epochs=2).fit(digits_train.subset(range(300)), output=tmp_path)
    monkeypatch.setattr(ckpt, "save", real)
    with pytest.raises(UsageError, match="no privacy accounting"):
        dp_trainer(epochs=2).fit(digits_train.subset(range(300)), output=tmp_path, resume=True)


def analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon of a Gaussian mechanism with sensitivity / std = mu (Balle & Wang 2018)."""

    def excess(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(excess, 0.0, 100.0)


def test_full_batch_accounting_matches_the_exact_gaussian_mechanism(digits_train):
    # With every sample in every step (q = 1), T steps of noise sigma * C on a sum of gradients clipped
    # to C compose to one Gaussian mechanism with mu = sqrt(T) / sigma: its epsilon is known exactly.
    data = digits_train.subset(range(100))
    torch.manual_seed(0)
    config = TrainConfig(
        method="dp-sgd", epochs=4, batch_size=128, val_fraction=0.0, seed=0, params={"target_epsilon": 2.0}
    )
    trainer = Trainer(DigitsCNN(), config, device="cpu", verbose=False)
    result = trainer.fit(data)
    privacy = trainer.objective.card()["privacy"]
    assert privacy["sample_rate"] == 1.0 and privacy["steps"] == 4
    exact = analytic_gaussian_epsilon(math.sqrt(4) / privacy["noise_multiplier"], 1e-5)
    # The PRV accountant's answer is an upper bound within its 0.01 error, never below the truth.
    assert exact <= result.extra["epsilon"] <= exact + 0.02
    assert result.extra["epsilon"] <= 2.0


def test_empty_poisson_batches_still_step_and_are_counted(digits_train):
    # Batch size 1 on 30 samples: q = 1/30, so about a third of the steps draw no sample at all.
    data = digits_train.subset(range(30))
    torch.manual_seed(0)
    config = TrainConfig(
        method="dp-sgd", epochs=2, batch_size=1, val_fraction=0.0, seed=0, params={"target_epsilon": 8.0}
    )
    trainer = Trainer(DigitsCNN(), config, device="cpu", verbose=False)
    result = trainer.fit(data)
    objective = trainer.objective
    sizes = [len(b) for b in objective.batches(30, 1, torch.Generator().manual_seed(0))]
    assert len(sizes) == 30 and sizes.count(0) >= 5 and max(sizes) >= 2
    assert objective.steps_taken() == 60  # every step counted, empty ones too
    assert 7.9 <= result.extra["epsilon"] <= 8.0


def test_layers_that_mix_samples_are_refused_by_name(digits_train, tmp_path):
    module = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10)
    )
    assert unsupported_layers(module) == [
        "1 (BatchNorm2d): use GroupNorm (opacus.validators.ModuleValidator.fix does it)"
    ]
    with pytest.raises(ModelError, match=r"layer\(s\) 1 \(BatchNorm2d\)"):
        dp_trainer(module=module).fit(digits_train.subset(range(200)), output=tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before the output folder was claimed
    assert unsupported_layers(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))) == []


def test_bad_runs_are_refused_before_training(digits_train):
    config = TrainConfig(method="dp-sgd", params={"delta": 0.05}).resolved()
    mut = ModelUnderTest(DigitsCNN(), device="cpu")
    with pytest.raises(ConfigError, match="delta 0.05 is not below 1 / n") as raised:
        DPSGD.check_run(config, mut, 45, 1)
    assert raised.value.field == "delta"
    with pytest.raises(UsageError, match="one process"):
        DPSGD.check_run(TrainConfig(method="dp-sgd").resolved(), mut, 1000, 2)
    with pytest.raises(ConfigError, match="target_epsilon"):
        DPSGD.check_run(
            TrainConfig(method="dp-sgd", params={"target_epsilon": 1e-6}).resolved(), mut, 1000, 1
        )


def test_cli_trains_records_and_prints_the_spent_budget(capsys, tmp_path):
    out = tmp_path / "dp"
    code = main(
        [
            *HARDEN,
            "--n-examples", "300", "--epochs", "1", "--quiet", "--method", "dp-sgd",
            "--target-epsilon", "2", "--delta", "1e-4", "--max-grad-norm", "0.5", "--accountant", "rdp",
            "--output", str(out),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    card = json.loads((out / "model.json").read_text())
    assert 1.9 <= card["epsilon"] <= 2.0 and card["delta"] == 1e-4
    assert card["training"]["privacy"]["max_grad_norm"] == 0.5
    assert card["training"]["privacy"]["accountant"] == "rdp"
    assert f"epsilon {card['epsilon']:.4g}" in text


def test_cli_without_opacus_names_the_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    code = main([*HARDEN, "--method", "dp-sgd", "--epochs", "1", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install opacus" in err and "Traceback" not in err
