"""``robustness.load_results``: the typed result with its numbers as pandas DataFrames."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import robustness
from robustness.core.errors import DataError, UsageError
from robustness.core.schema import AuditResults, RobustRow

DATA = Path(__file__).resolve().parents[1] / "reports" / "data"


@pytest.fixture(scope="module")
def loaded():
    return robustness.load_results(DATA)


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads((DATA / "results.json").read_text())


def test_import_robustness_stays_light():
    code = "import sys, robustness; robustness.load_results; print('pandas' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_the_typed_result_reads_through(loaded, raw):
    assert isinstance(loaded.typed, AuditResults)
    assert loaded.verdict == raw["verdict"] and loaded.clean.accuracy == raw["clean"]["accuracy"]
    assert loaded.path == DATA / "results.json" and loaded.folder == DATA
    assert all(isinstance(r, RobustRow) for r in loaded.robust_rows) and len(loaded.robust_rows) == 3
    assert loaded.failed_gates()[0].name == "min_robust_accuracy@0.2"  # methods too
    assert robustness.load_results(DATA / "results.json").verdict == loaded.verdict


def test_robust_has_one_row_per_eps_with_interval_and_per_attack_columns(loaded, raw):
    df = loaded.robust
    assert isinstance(df, pd.DataFrame) and len(df) == len(raw["robust"])
    assert list(df.columns[:9]) == [
        "eps",
        "norm",
        "accuracy",
        "ci_low",
        "ci_high",
        "n",
        "n_robust",
        "time_s",
        "accuracy_attacks_only",
    ]
    assert list(df.columns[9:]) == ["after:fgsm", "after:pgd"]
    for i, row in enumerate(raw["robust"]):
        got = df.iloc[i]
        assert got["eps"] == row["eps"] and got["norm"] == "linf"
        assert got["accuracy"] == row["accuracy"] and got["n_robust"] == row["n_robust"] and got["n"] == 200
        assert [got["ci_low"], got["ci_high"]] == row["ci"]
        assert got["after:fgsm"] == row["per_attack"]["fgsm"] and got["after:pgd"] == row["per_attack"]["pgd"]
        assert got["time_s"] == row["time_s"]
    assert df["accuracy"].is_monotonic_decreasing
    assert str(df["n"].dtype) == "Int64"


def test_samples_has_n_times_eps_rows_from_samples_jsonl(loaded, raw):
    df = loaded.samples
    lines = [json.loads(line) for line in (DATA / "samples.jsonl").read_text().splitlines()]
    n_eps = len(raw["threat"]["eps"])
    assert len(df) == raw["data"]["n"] * n_eps == len(lines) * n_eps
    assert list(df.columns) == [
        "id",
        "label",
        "clean_pred",
        "eps",
        "robust",
        "broken_by",
        "perturbation_norm",
        "adv_pred",
    ]
    # the robust share per eps is the robust accuracy of results.json
    share = df.groupby("eps")["robust"].mean()
    assert share.tolist() == [r["accuracy"] for r in raw["robust"]]
    d17 = df[df["id"] == "digits-17"].reset_index(drop=True)
    assert d17["robust"].tolist() == [True, True, False]
    assert d17["broken_by"].tolist() == [None, None, "fgsm"] and d17["perturbation_norm"].iloc[2] == 0.2
    # the prediction is known where no attack changed it; this file (0.1.0) has no adversarial one
    assert d17["adv_pred"].iloc[0] == 7 and pd.isna(d17["adv_pred"].iloc[2])
    d5 = df[df["id"] == "digits-5"]  # wrong without an attack: the clean prediction at every eps
    assert d5["adv_pred"].tolist() == [9, 9, 9] and not d5["robust"].any()
    by_class = df[df["eps"] == 0.1].groupby("label")["robust"].mean()
    pc = raw["robust"][1]["per_class_accuracy"]
    assert {str(k): pytest.approx(v) for k, v in by_class.items()} == pc


def test_samples_reads_a_recorded_adversarial_prediction(tmp_path):
    shutil.copytree(DATA, tmp_path / "run")
    p = tmp_path / "run" / "samples.jsonl"
    rows = [json.loads(line) for line in p.read_text().splitlines()]
    rows[1]["eps"][2]["adv_pred"] = 3
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = robustness.load_results(tmp_path / "run").samples
    assert df[(df["id"] == rows[1]["id"]) & (df["eps"] == 0.2)]["adv_pred"].tolist() == [3]


def test_attacks_has_one_row_per_eps_and_attack_with_its_cost(loaded, raw):
    df = loaded.attacks
    assert len(df) == 2 * len(raw["robust"])
    assert df[["eps", "attack"]].values.tolist() == [
        [e, a] for e in (0.05, 0.1, 0.2) for a in ("fgsm", "pgd")
    ]
    pgd = df[(df["eps"] == 0.1) & (df["attack"] == "pgd")].iloc[0]
    cost = raw["robust"][1]["per_attack_cost"]["pgd"]
    assert pgd["n_attacked"] == cost["n_attacked"] and pgd["n_broken"] == cost["n_broken"]
    assert pgd["n_backward"] == cost["n_backward"] and pgd["time_s"] == cost["time_s"]
    assert pgd["robust_after"] == raw["robust"][1]["per_attack"]["pgd"]
    assert pgd["kind"] == "white-box" and json.loads(pgd["params"])["steps"] == 20
    # what each attack broke adds up to what the worst case lost
    broken = df.groupby("eps")["n_broken"].sum().tolist()
    assert broken[0] == raw["clean"]["correct"] - raw["robust"][0]["n_robust"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(UsageError, match="no results file"):
        robustness.load_results(tmp_path)
    shutil.copy(DATA / "results.json", tmp_path / "results.json")
    res = robustness.load_results(tmp_path)
    with pytest.raises(UsageError, match="no per-sample results") as exc:
        _ = res.samples
    assert "samples.jsonl" in str(exc.value)
    (tmp_path / "samples.jsonl").write_text('{"id": "x", "label": "7", "clean_pred": 7, "eps": []}\n')
    with pytest.raises(DataError, match="line 1 is not a sample record"):
        _ = robustness.load_results(tmp_path).samples
