"""A results.json written by robustness-audit 0.1.0 (schema 1.0) still renders, compares and gates.

The file is ``tests/reports/data/results.json`` (with its samples.jsonl and examples.npz), kept
as 0.1.0 wrote it; every reader goes through the one loader, which migrates it in memory.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from robustness.audit import run_audit
from robustness.cli import main
from robustness.compare import BudgetWarning, compare
from robustness.core.schema import load_results

FIXTURE = Path(__file__).resolve().parents[1] / "reports" / "data"


@pytest.fixture
def old(tmp_path) -> Path:
    """The 0.1.0 audit folder, copied; returns its results.json as old.json."""
    folder = tmp_path / "old"
    shutil.copytree(FIXTURE, folder)
    path = folder / "old.json"
    (folder / "results.json").rename(path)
    assert json.loads(path.read_text())["schema_version"] == "1.0"
    return path


def test_a_0_1_0_results_file_renders_to_pdf(old, tmp_path, capsys):
    out = tmp_path / "x.pdf"
    assert main(["report", str(old), "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF-")
    pypdf = pytest.importorskip("pypdf")
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(str(out)).pages).split())
    assert "VERDICT: FAIL" in text and "min robust accuracy @ eps 0.2" in text
    assert "results schema 1.0" in text  # the report names the file's own schema
    assert json.loads(old.read_text())["schema_version"] == "1.0"  # read, never rewritten


def test_a_0_1_0_results_file_compares_with_itself(old, capsys):
    assert main(["compare", str(old), str(old)]) == 0
    assert "result: no significant regression" in capsys.readouterr().out
    cmp = compare(old, old)
    assert cmp.budget_differences == [] and not cmp.regressed
    assert [r.base_accuracy for r in cmp.rows] == [0.995, 0.925, 0.515, 0.02]


def test_a_0_1_0_results_file_serves_as_a_baseline(old, tmp_path):
    out = tmp_path / "audit"
    config = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 20},
        "threat": {"norm": "linf", "eps": [0.05, 0.1, 0.2]},
        "attacks": [{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 5}}],
        "sanity_checks": {"enabled": False, "reason": "the baseline gate is what is tested here"},
        "gates": {"max_drop": 0.9, "baseline": str(old)},
        "output": {"dir": str(out), "formats": ["json", "md"]},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)  # PGD-5 here, PGD-20 in the baseline
        res = run_audit(config)
    drops = [g for g in res["gates"] if g["kind"] == "max_drop"]
    assert [(g["eps"], g["comparator"], g["threshold"]) for g in drops] == [
        (0.05, "<=", 0.9),
        (0.1, "<=", 0.9),
        (0.2, "<=", 0.9),
    ]
    assert [g["baseline_accuracy"] for g in drops] == [0.925, 0.515, 0.02]  # the 0.1.0 file's numbers
    assert all(g["passed"] for g in drops) and res["verdict"] == "pass"
    # This audit's own file is the current schema, with every gate explicit, and reads back.
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res)) and on_disk["schema_version"] == "1.1"
    assert load_results(out).to_dict() == on_disk
    assert "max drop ≤ 0.900" in (out / "summary.md").read_text()
