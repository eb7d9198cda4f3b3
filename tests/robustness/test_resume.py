"""Resume: an audit killed with `kill -9` mid-run and rerun ends with the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robustness.checkpoint import Checkpoint, derive_seed
from robustness.core.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, outdir: Path, eps=(0.05, 0.1)) -> Path:
    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 24, "batch_size": 4},
        "threat": {"norm": "linf", "eps": list(eps)},
        "attacks": [
            {"name": "pgd", "params": {"steps": 10}},
            {"name": "square", "params": {"n_queries": 100}},
        ],
        "sanity_checks": {"sample_size": 6},
        "gates": {"min_clean_accuracy": 0.8},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "robustness", "audit", str(config), "--progress", "off", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def numbers(outdir: Path) -> dict:
    res = json.loads((outdir / "results.json").read_text())
    return {
        "clean": res["clean"]["accuracy"],
        "robust": [(r["eps"], r["n_robust"], r["per_attack"], r["found_by_checks"]) for r in res["robust"]],
        "checks": [(c["name"], c["status"], c.get("measured")) for c in res["sanity_checks"]],
        "verdict": res["verdict"],
        "samples": (outdir / "samples.jsonl").read_text(),
        "resumed_batches": res["timing"]["resumed_batches"],
    }


def test_kill_9_then_rerun_gives_the_same_results(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_cfg = write_config(tmp_path / "ref.yaml", ref_dir)
    cfg = write_config(tmp_path / "run.yaml", run_dir)

    proc = subprocess.Popen(
        command(cfg), cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    ckpt = run_dir / ".checkpoint"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(ckpt.glob("*.npz"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the audit ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "results.json").exists()
    done_before = len(list(ckpt.glob("*.npz")))
    assert done_before >= 2

    resumed = subprocess.run(command(cfg), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr.lower() or "resuming" in resumed.stdout.lower()
    ref = subprocess.run(command(ref_cfg), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr

    a, b = numbers(run_dir), numbers(ref_dir)
    assert a["resumed_batches"] >= 2 and b["resumed_batches"] == 0
    for key in ("clean", "robust", "checks", "verdict", "samples"):
        assert a[key] == b[key], key

    # A changed config is refused (exit 2), naming what changed, unless --restart.
    changed = write_config(tmp_path / "changed.yaml", run_dir, eps=(0.05, 0.2))
    # make the checkpoint unfinished again, as after a crash
    meta = json.loads((ckpt / "fingerprint.json").read_text())
    meta["complete"] = False
    (ckpt / "fingerprint.json").write_text(json.dumps(meta))
    refused = subprocess.run(command(changed), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2
    assert "changed: threat" in refused.stderr and "--restart" in refused.stderr
    restarted = subprocess.run(
        command(changed, "--restart", "--n-examples", "8", "--exit-zero"),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert restarted.returncode == 0, restarted.stderr
    res = json.loads((run_dir / "results.json").read_text())
    assert res["threat"]["eps"] == [0.05, 0.2] and res["data"]["n"] == 8


def test_checkpoint_fingerprint_rules(tmp_path):
    parts = {"threat": {"eps": [0.1]}, "model": "m1", "data": "d1"}
    ck = Checkpoint(tmp_path, parts)
    assert ck.open() == "new"
    ck.save_batch(0, "a0-pgd", 0, {"idx": __import__("numpy").arange(3)})
    assert Checkpoint(tmp_path, parts).open() == "resumed"
    with pytest.raises(UsageError) as info:
        Checkpoint(tmp_path, {**parts, "model": "m2"}).open()
    assert "changed: model" in str(info.value)
    Checkpoint(tmp_path, parts).mark_complete()
    # a finished run of another config is not mixed in: it starts afresh without an error
    other = Checkpoint(tmp_path, {**parts, "data": "d2"})
    assert other.open() == "new" and other.load_batch(0, "a0-pgd", 0) is None
    assert Checkpoint(tmp_path, {**parts, "data": "d2"}).open(restart=True) == "restarted"


def test_seeds_depend_only_on_the_position():
    assert derive_seed(0, 1, "a0-pgd", 2) == derive_seed(0, 1, "a0-pgd", 2)
    assert len({derive_seed(0, j, "a0-pgd", b) for j in range(3) for b in range(5)}) == 15
    assert derive_seed(1, 0, "a0-pgd", 0) != derive_seed(0, 0, "a0-pgd", 0)
    assert 0 <= derive_seed(123456789, 9, "x", 9) < 2**31
