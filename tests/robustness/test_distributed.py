"""Several processes (torchrun, gloo on CPU) give the numbers of one process.

Each test starts real processes with the environment torchrun sets (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and compares what they return with a single-process run
under the same conditions (one thread per process). One test goes through
``python -m torch.distributed.run`` itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustness.core import distributed
from robustness.core.errors import UsageError

REPO = Path(__file__).resolve().parents[2]

# What a rank runs: ``python worker.py MODE OUT_DIR [ARGS...]``; it writes OUT_DIR/rank{R}.json or .pt.
WORKER = r"""
import json, os, sys
from pathlib import Path

import torch

mode, out = sys.argv[1], Path(sys.argv[2])
from robustness.core import distributed

ctx = distributed.init_from_env("cpu")
rank = ctx.rank

if mode == "helpers":
    res = {
        "world": ctx.world_size,
        "threads": torch.get_num_threads(),
        "shard": ctx.shard(7),
        "counts": ctx.sum_counts([rank + 1, 10]),
        "floats": ctx.sum_floats([0.5]),
        "gathered": ctx.all_gather_object({"r": rank}),
        "main": ctx.main_only(lambda: f"from rank {ctx.rank}"),
        "codes_error": ctx.agree_exit_code(0 if rank == 0 else 2),
        "codes_verdict": ctx.agree_exit_code(1 if rank == 0 else 0),
    }
    try:
        def fail():
            raise distributed.UsageError("rank 0 refused", field="output", fix="x")
        ctx.main_only(fail)
        res["raised"] = None
    except distributed.UsageError as exc:
        res["raised"] = [type(exc).__name__, exc.field]
    (out / f"rank{rank}.json").write_text(json.dumps(res))

elif mode == "train":
    from defenses import TrainConfig, Trainer, checkpoint
    from robustness.core.data import load_data
    from robustness.zoo import DigitsCNN

    method, epochs, folder, stop = sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    extra = {"eps": 0.2, "steps": 2} if method == "pgd-at" else {}
    data = load_data("builtin:digits:train", n_examples=193, seed=0)
    torch.manual_seed(0)
    cfg = TrainConfig(method=method, epochs=epochs, batch_size=64, seed=0, val_fraction=0.0, **extra)
    if stop:
        # Simulate a kill right after the checkpoint of epoch `stop`, on every rank.
        save, gather = checkpoint.save, distributed.DistContext.all_gather_object

        def save_then_die(folder_, state):
            save(folder_, state)
            if state["epoch"] == stop:
                raise SystemExit(17)

        def gather_then_die(self, obj):
            got = gather(self, obj)
            if isinstance(obj, dict) and "gen:data" in obj and self.rank != 0:
                self._seen = getattr(self, "_seen", 0) + 1
                if self._seen == stop:
                    raise SystemExit(17)
            return got

        checkpoint.save = save_then_die
        distributed.DistContext.all_gather_object = gather_then_die
    trainer = Trainer(DigitsCNN(), cfg, architecture={"factory": "zoo:digits-cnn"}, device="cpu", verbose=False)
    result = trainer.fit(data, output=folder if folder != "-" else None, resume=bool(int(sys.argv[7])))
    torch.save(
        {"state": result.module.state_dict(), "log": result.log}, out / f"rank{rank}.pt"
    )

elif mode == "attack":
    from attacks.registry import get_attack
    from robustness.core.data import load_data
    from robustness.core.model import load_model

    m = load_model("zoo:digits-cnn", device="cpu")
    d = load_data("builtin:digits").subset(range(100))
    name = sys.argv[3]
    params = json.loads(sys.argv[4])
    res = get_attack(name, **params)(m, d.x, d.y, eps=[0.05, 0.1], batch_size=15, seed=3, dist=ctx)
    torch.save(
        [
            {
                k: getattr(r, k)
                for k in (
                    "x_adv", "adv_pred", "success", "n_forward", "n_backward", "n_queries", "robust_accuracy", "broken_by"
                )
            }
            for r in res
        ],
        out / f"rank{rank}.pt",
    )
distributed.finish(0)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(world: int, rank: int, port: int) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    if world > 1:
        env.update(
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    return env


def launch(tmp: Path, world: int, *args: str, expect: int = 0) -> Path:
    """Run the worker on ``world`` ranks (1: a plain process); returns the folder of their outputs."""
    script = tmp / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    out = tmp / f"out-{world}-{len(list(tmp.glob('out-*')))}"
    out.mkdir()
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), args[0], str(out), *args[1:]],
            env=_env(world, r, port),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == expect, err[-3000:]
    return out


# ---------------------------------------------------------------------------------------
# The single-process path and the helpers


def test_single_process_sets_nothing_up(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    threads = torch.get_num_threads()
    ctx = distributed.init_from_env("cpu")
    assert ctx is distributed.SINGLE and not ctx.enabled and ctx.is_main
    assert not torch.distributed.is_initialized()
    assert torch.get_num_threads() == threads
    assert ctx.shard(5) == [0, 1, 2, 3, 4]
    assert ctx.sum_counts([3, 4]) == [3, 4]
    assert ctx.main_only(lambda: 7) == 7
    assert distributed.finish(3) == 3
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_from_env() is distributed.SINGLE


def test_sharding_has_no_padding_and_no_repeats():
    for world in (2, 3, 4):
        parts = [distributed.DistContext(rank=r, world_size=world).shard(10) for r in range(world)]
        flat = sorted(i for p in parts for i in p)
        assert flat == list(range(10))  # every sample once: no DistributedSampler-style padding
        assert [len(p) for p in parts] == [len(range(r, 10, world)) for r in range(world)]
    ctx = distributed.DistContext(rank=1, world_size=3)
    assert [b for b in range(7) if ctx.owns(b)] == [1, 4]


def test_world_size_without_rendezvous_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(UsageError, match="MASTER_ADDR"):
        distributed.init_from_env("cpu")
    assert not torch.distributed.is_initialized()


def test_helpers_on_two_ranks(tmp_path):
    out = launch(tmp_path, 2, "helpers")
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["shard"] == [0, 2, 4, 6] and r1["shard"] == [1, 3, 5]
    for r in (r0, r1):
        assert r["world"] == 2
        assert r["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        assert r["counts"] == [3, 20] and r["floats"] == [1.0]
        assert r["gathered"] == [{"r": 0}, {"r": 1}]
        assert r["main"] == "from rank 0"
        assert r["codes_error"] == 2  # an error on any rank wins over a verdict
        assert r["codes_verdict"] == 1  # ranks disagreeing on verdicts: rank 0's
        assert r["raised"] == ["UsageError", "output"]  # rank 0's user error, raised on every rank


# ---------------------------------------------------------------------------------------
# Training: DistributedDataParallel


def test_ddp_training_matches_one_process(tmp_path):
    # 193 samples, batch 64: the last global batch has 1 sample, so rank 1 joins with weight 0.
    single = torch.load(launch(tmp_path, 1, "train", "standard", "2", "-", "0", "0") / "rank0.pt")
    out = launch(tmp_path, 2, "train", "standard", "2", str(tmp_path / "run"), "0", "0")
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in range(2))
    for k, v in single["state"].items():
        assert torch.equal(r0["state"][k], r1["state"][k])  # DDP keeps the ranks identical
        # Same as one process up to float summation order (Adam, 8 steps of lr 2e-3):
        # 2e-4 is a tenth of one step.
        assert torch.allclose(r0["state"][k], v, rtol=0, atol=2e-4), k
    for a, b in zip(single["log"], r0["log"]):
        assert a["train_accuracy"] == b["train_accuracy"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["rng_ranks"]) == 2
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_ddp_adversarial_training_resumes_exactly(tmp_path):
    whole = launch(tmp_path, 2, "train", "pgd-at", "2", str(tmp_path / "a"), "0", "0")
    launch(tmp_path, 2, "train", "pgd-at", "2", str(tmp_path / "b"), "1", "0", expect=17)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = launch(tmp_path, 2, "train", "pgd-at", "2", str(tmp_path / "b"), "0", "1")
    a, b = torch.load(whole / "rank0.pt"), torch.load(resumed / "rank0.pt")
    for k in a["state"]:
        assert torch.equal(a["state"][k], b["state"][k]), k  # per-rank random starts restored


# ---------------------------------------------------------------------------------------
# Audit through torchrun

AUDIT_YAML = """
model: {spec: "zoo:digits-cnn", device: cpu}
data: {spec: "builtin:digits", n_examples: 48, batch_size: 8}
threat: {norm: linf, eps: [0.05, 0.1]}
attacks:
  - {name: apgd-ce, params: {steps: 10}}
  - {name: square, params: {n_queries: 60}}
sanity_checks: {sample_size: 12}
gates: {min_clean_accuracy: 0.5}
output: {dir: unused, formats: [json]}
seed: 0
"""


def _audit_numbers(folder: Path) -> tuple:
    r = json.loads((folder / "results.json").read_text())
    keep = ("eps", "n", "n_robust", "accuracy", "ci", "per_attack", "per_class_accuracy", "found_by_checks")
    return (
        r["clean"],
        [{k: e[k] for k in keep} for e in r["robust"]],
        [(c["name"], c["status"], json.dumps(c.get("measured"), sort_keys=True)) for c in r["sanity_checks"]],
        r["gates"],
        r["verdict"],
        (folder / "samples.jsonl").read_text(),
    )


def _cli(tmp: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    launcher = (
        [sys.executable, "-m", "robustness"]
        if nproc == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        + ["-m", "robustness"]
    )
    return subprocess.run(
        launcher + list(args),
        env=_env(1, 0, 0),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_torchrun_audit_equals_single_process_and_resumes_per_rank(tmp_path):
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(AUDIT_YAML)
    one = _cli(tmp_path, 1, "audit", str(cfg), "-o", "one", "-q")
    two = _cli(tmp_path, 2, "audit", str(cfg), "-o", "two", "-q")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("verdict:") == 1  # rank 0 alone prints
    assert _audit_numbers(tmp_path / "two") == _audit_numbers(tmp_path / "one")
    res = json.loads((tmp_path / "two" / "results.json").read_text())
    assert res["environment"]["processes"]["world_size"] == 2
    # Each rank checkpointed its own batches (batch b on rank b % 2) into the shared folder.
    batches = sorted((tmp_path / "two" / ".checkpoint").glob("*.npz"))
    assert len(batches) >= 12
    # An interrupted run: some batches never written. The rerun redoes only those, on their ranks.
    lost = batches[1::3]
    for f in lost:
        f.unlink()
    again = _cli(tmp_path, 2, "audit", str(cfg), "-o", "two", "-q")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _audit_numbers(tmp_path / "two") == _audit_numbers(tmp_path / "one")
    res = json.loads((tmp_path / "two" / "results.json").read_text())
    assert res["timing"]["resumed_batches"] == len(batches) - len(lost)


def test_torchrun_audit_of_a_streamed_image_folder_equals_single_process(
    tmp_path, image_folder, image_models
):
    """An image folder is read batch by batch on each rank (robustness.core.rows): the numbers,
    samples.jsonl and the report's examples equal one process's."""
    root = image_folder(14)  # 42 images of 12 x 12: six batches over two ranks, the last one short
    cfg = tmp_path / "folder.yaml"
    cfg.write_text(
        AUDIT_YAML.replace('"zoo:digits-cnn"', '"rb_image_models:make"')
        .replace('spec: "builtin:digits", n_examples: 48', f'spec: "folder:{root}"')
        .replace("eps: [0.05, 0.1]", "eps: [0.002, 0.02]")
        .replace("min_clean_accuracy: 0.5", "min_clean_accuracy: 0.1")
    )
    one = _cli(tmp_path, 1, "audit", str(cfg), "-o", "one", "-q")
    two = _cli(tmp_path, 2, "audit", str(cfg), "-o", "two", "-q")
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert _audit_numbers(tmp_path / "two") == _audit_numbers(tmp_path / "one")
    robust = [
        row["n_robust"] for row in json.loads((tmp_path / "one" / "results.json").read_text())["robust"]
    ]
    assert 0 < robust[1] < robust[0], robust
    import numpy as np

    a, b = (np.load(tmp_path / run / "examples.npz") for run in ("one", "two"))
    assert all(np.array_equal(a[key], b[key]) for key in a.files)


def test_torchrun_usage_error_exits_2_on_every_rank(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(AUDIT_YAML.replace("eps: [0.05, 0.1]", "eps: [-1]"))
    # Each rank's exit code is checked directly (torchrun itself reports any non-zero code as 1).
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "robustness", "audit", str(cfg), "-o", "bad"],
            env=_env(2, r, port),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    codes = [p.wait(timeout=120) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert codes == [2, 2], errs
    assert "eps" in errs[0]


# ---------------------------------------------------------------------------------------
# GPU fast paths that CPU can check


def test_bf16_precision_keeps_float32_logits_and_is_recorded(digits_model, digits_small):
    from robustness.core.model import ModelUnderTest

    m = ModelUnderTest(digits_model.module, spec="zoo:digits-cnn", device="cpu", precision="bf16")
    x = digits_small.x[:16]
    out = m(x)
    assert out.dtype == torch.float32
    ref = digits_model(x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.9
    assert m.info()["precision"] == "bf16"
    from robustness.core.errors import ModelError

    with pytest.raises(ModelError, match="precision"):
        ModelUnderTest(digits_model.module, device="cpu", precision="fp16")


@pytest.mark.gpu
def test_cuda_pgd_bf16_channels_last_strength(digits_test):
    from attacks.registry import get_attack
    from robustness.core.model import load_model

    fp32 = load_model("zoo:digits-cnn", device="cuda")
    bf16 = load_model("zoo:digits-cnn", device="cuda", precision="bf16", channels_last=True)
    x, y = digits_test.x, digits_test.y
    a = get_attack("pgd", steps=20)(fp32, x, y, eps=0.1)
    b = get_attack("pgd", steps=20)(bf16, x, y, eps=0.1)
    # bf16 forward passes must not weaken the attack (robust accuracy within 1 point).
    assert b.robust_accuracy <= a.robust_accuracy + 0.01
    assert b.x_adv.dtype == torch.float32


def _assert_results_equal(a: list[dict], b: list[dict]) -> None:
    for ra, rb in zip(a, b):
        assert torch.equal(ra["x_adv"], rb["x_adv"])
        assert torch.equal(ra["adv_pred"], rb["adv_pred"])
        assert torch.equal(ra["success"], rb["success"])
        assert ra["n_forward"] == rb["n_forward"] and ra["n_backward"] == rb["n_backward"]
        assert ra["n_queries"] == rb["n_queries"]
        assert ra["robust_accuracy"] == rb["robust_accuracy"]
        assert ra["broken_by"] == rb["broken_by"]


@pytest.mark.parametrize(
    "name,params",
    [
        ("pgd", {"steps": 10}),
        ("apgd-ce", {"steps": 10}),
        # The ensemble's attribution and Square's queries come back from every rank's batches.
        ("autoattack-fast", {"steps": 3, "n_target_classes": 2, "n_queries": 30}),
    ],
)
def test_attack_on_two_ranks_equals_one_process(tmp_path, name, params):
    p = json.dumps(params)
    one = torch.load(launch(tmp_path, 1, "attack", name, p) / "rank0.pt")
    out = launch(tmp_path, 2, "attack", name, p)
    r0, r1 = (torch.load(out / f"rank{r}.pt") for r in range(2))
    _assert_results_equal(one, r0)
    _assert_results_equal(r0, r1)  # every rank holds the gathered result
    assert one[0]["robust_accuracy"] < 1.0
