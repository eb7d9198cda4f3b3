"""The audit runner end to end: results schema, outputs, gates, exit codes, renderer isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustness.audit import run_audit
from robustness.core.metrics import clopper_pearson

REPO = Path(__file__).resolve().parents[2]
REQUIRED = [
    "schema_version",
    "tool_version",
    "created",
    "config",
    "environment",
    "model",
    "data",
    "clean",
    "robust",
    "sanity_checks",
    "gates",
    "verdict",
]


def small_config(outdir: Path, **gates) -> dict:
    return {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 30, "batch_size": 16},
        "threat": {"norm": "linf", "eps": [0.05, 0.15]},
        "attacks": [
            {"name": "pgd", "params": {"steps": 10}},
            {"name": "square", "params": {"n_queries": 200}},
        ],
        "sanity_checks": {"sample_size": 8},
        "gates": {"min_clean_accuracy": 0.8, **gates},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit")
    res = run_audit(small_config(out, min_robust_accuracy={0.05: 0.5}))
    return out, res


def test_results_have_the_schema(audited):
    out, res = audited
    for key in REQUIRED:
        assert key in res, key
    assert res["schema_version"] == "1.1"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["robust"] == json.loads(json.dumps(res["robust"]))
    assert res["model"]["n_parameters"] == 151306 and len(res["model"]["sha256"]) == 64
    assert res["data"]["n"] == 30 and len(res["data"]["sha256"]) == 64
    assert res["environment"]["torch"] and "seed" in res["environment"]
    c = res["clean"]
    assert {"accuracy", "ci", "precision", "recall", "f1", "confusion"} <= set(c)
    assert np.asarray(c["confusion"]).sum() == 30
    assert [a["name"] for a in res["attacks"]] == ["pgd", "square"]
    assert res["attacks"][0]["params"]["steps"] == 10 and res["attacks"][1]["kind"] == "black-box"


def test_robust_accuracy_is_the_per_sample_worst_case_and_never_rises(audited):
    out, res = audited
    robust = res["robust"]
    assert [r["eps"] for r in robust] == [0.05, 0.15]
    accs = [r["accuracy"] for r in robust]
    assert accs[0] >= accs[1]
    assert res["clean"]["accuracy"] >= accs[0]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 30
    for j, r in enumerate(robust):
        k = sum(s["eps"][j]["robust"] for s in samples)
        assert r["n_robust"] == k and r["accuracy"] == pytest.approx(k / 30)
        assert r["ci"] == pytest.approx(list(clopper_pearson(k, 30)))
        assert r["ci"][0] <= r["accuracy"] <= r["ci"][1]
        # per_attack is cumulative in run order and can only fall; checks can only lower it further
        pa = list(r["per_attack"].values())
        assert pa == sorted(pa, reverse=True) and r["accuracy"] <= pa[-1]
        assert r["per_attack_cost"]["pgd"]["n_backward"] > 0
        assert r["per_attack_cost"]["square"]["n_queries"] > 0
        assert set(r["per_class_accuracy"]) == {str(i) for i in range(10)}
    for s in samples:
        flags = [e["robust"] for e in s["eps"]]
        assert flags == sorted(flags, reverse=True)  # once broken, broken at every larger eps
        for e in s["eps"]:
            if not e["robust"] and e["broken_by"]:
                assert 0 < e["perturbation_norm"] <= e["eps"] + 1e-5
    broken = [s for s in samples if not s["eps"][-1]["robust"] and s["clean_pred"] == s["label"]]
    assert broken and all(s["eps"][-1]["broken_by"] for s in broken)


def test_examples_file_for_the_image_grid(audited):
    out, res = audited
    with np.load(out / "examples.npz") as f:
        k = f["ids"].shape[0]
        assert 1 <= k <= 8
        assert f["x_clean"].shape == (k, 1, 8, 8) and f["x_adv"].shape == (2, k, 1, 8, 8)
        assert f["adv_pred"].shape == (2, k) and list(f["eps"]) == [0.05, 0.15]
        diff = np.abs(f["x_adv"] - f["x_clean"][None]).reshape(2, k, -1).max(axis=2)
        assert (diff <= np.asarray([0.05, 0.15])[:, None] + 1e-5).all()
        changed = f["adv_pred"] != f["clean_pred"][None]
        assert changed.any()  # broken samples are shown first


def test_checks_gates_and_verdict(audited):
    _, res = audited
    names = [c["name"] for c in res["sanity_checks"]]
    assert names == [
        "iterative_beats_single_step",
        "monotonic_in_eps",
        "large_eps_breaks_all",
        "black_box_not_stronger",
        "more_iterations_no_gain",
        "gradients_nonzero",
        "deterministic_forward",
        "outputs_logits",
        "binarization",
        "attack_failure",
    ]
    for c in res["sanity_checks"]:
        assert c["status"] in ("pass", "skip"), c
        assert c["title"] and c["detail"]
    large = next(c for c in res["sanity_checks"] if c["name"] == "large_eps_breaks_all")
    assert large["measured"]["n_robust"] <= 0.02 * large["measured"]["n_tested"] + 1
    gates = {g["name"]: g for g in res["gates"]}
    assert set(gates) == {"min_clean_accuracy", "min_robust_accuracy@0.05"}
    g = gates["min_robust_accuracy@0.05"]
    assert g["value"] == pytest.approx(res["robust"][0]["ci"][0]) and g["threshold"] == 0.5
    assert res["verdict"] == "pass" and res["verdict_reason"]
    assert res["timing"]["attacks_s"] > 0


def test_point_judge_max_drop_and_a_gate_that_fails(audited, tmp_path):
    out, res = audited
    cfg = small_config(tmp_path / "b", min_robust_accuracy={0.05: 1.0})
    cfg["gates"].update({"judge": "point", "max_drop": 0.0, "baseline": str(out / "results.json")})
    again = run_audit(cfg)
    # the same config and seed: identical numbers, drop 0
    assert [r["accuracy"] for r in again["robust"]] == [r["accuracy"] for r in res["robust"]]
    gates = {g["name"]: g for g in again["gates"]}
    assert gates["max_drop@0.05"]["passed"] and gates["max_drop@0.05"]["value"] == 0
    assert gates["min_robust_accuracy@0.05"]["value"] == res["robust"][0]["accuracy"]
    assert not gates["min_robust_accuracy@0.05"]["passed"]
    assert again["verdict"] == "fail" and "min_robust_accuracy@0.05" in again["verdict_reason"]


def test_renderer_failure_keeps_results(audited, tmp_path, monkeypatch):
    import reports

    def broken(results, fmt, path, **kw):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(reports, "render", broken)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    cfg = small_config(tmp_path / "r")
    cfg["data"]["n_examples"] = 10
    cfg["threat"]["eps"] = [0.05]
    cfg["output"]["formats"] = ["json", "md"]
    res = run_audit(cfg)
    on_disk = json.loads((tmp_path / "r" / "results.json").read_text())
    assert on_disk["verdict"] == res["verdict"]
    assert "renderer exploded" in on_disk["renderer_errors"]["md"]


def cli(*args, env=None):
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "robustness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=e,
        timeout=600,
    )


def test_cli_exit_codes(tmp_path):
    import yaml

    cfg = small_config(tmp_path / "c", min_robust_accuracy={0.05: 1.0})
    cfg["data"]["n_examples"] = 10
    cfg["threat"]["eps"] = [0.05]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = cli("audit", str(path), "--progress", "off")
    assert r.returncode == 1, r.stderr
    assert "verdict: FAIL" in r.stdout and "min_robust_accuracy@0.05" in r.stdout
    assert json.loads((tmp_path / "c" / "results.json").read_text())["verdict"] == "fail"
    r = cli("audit", str(path), "--exit-zero", "--quiet")
    assert r.returncode == 0 and r.stdout.startswith("verdict: FAIL")
    path.write_text(path.read_text().replace("min_clean_accuracy", "min_clean_accurcy"))
    r = cli("audit", str(path))
    assert r.returncode == 2 and "gates.min_clean_accurcy" in r.stderr


def test_progress_plain_is_one_line_per_attack_with_a_30s_heartbeat():
    import io

    from robustness.progress import Progress, choose_mode

    now = [0.0]
    out = io.StringIO()
    p = Progress("plain", stream=out, clock=lambda: now[0])
    p.stage_start(0.1, "apgd-t", 200, 100, 180, 200)
    for _ in range(100):  # 100 batches over 100 s: three heartbeats, not a hundred lines
        now[0] += 1.0
        p.batch_done(170)
    p.stage_done(0.1, "apgd-t", 180, 10, 170, 200, 100.0, False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all("ETA" in line for line in lines[:3])
    assert "eps 0.1 apgd-t" in lines[-1] and "robust 170/200" in lines[-1]
    live = io.StringIO()
    p = Progress("live", stream=live, clock=lambda: now[0])
    p.stage_start(0.2, "square", 50, 2, 50, 200)
    now[0] += 1
    p.batch_done(40)
    p.close()
    assert "\r" in live.getvalue() and "still robust 40/200" in live.getvalue()
    assert choose_mode("auto", stream=io.StringIO()) == "plain"
    assert choose_mode("auto", quiet=True) == "off" and choose_mode("off") == "off"
    assert choose_mode("on", stream=io.StringIO()) == "live"


@pytest.mark.gpu
def test_audit_on_cuda_matches_the_cpu_audit(audited, tmp_path):
    """The same audit on CUDA (pinned transfers, periodic compaction): clean numbers equal, and
    the attacks no weaker than on the CPU (random draws differ between devices: one sample)."""
    cfg = small_config(tmp_path, min_robust_accuracy={0.05: 0.5})
    cfg["model"]["device"] = "cuda"
    res = run_audit(cfg)
    cpu = audited[1]
    assert res["environment"]["device"].startswith("cuda")
    assert res["clean"]["accuracy"] == cpu["clean"]["accuracy"]
    for gpu_row, cpu_row in zip(res["robust"], cpu["robust"]):
        assert gpu_row["eps"] == cpu_row["eps"]
        assert gpu_row["accuracy"] <= cpu_row["accuracy"] + 1 / 30 + 1e-9
