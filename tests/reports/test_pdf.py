"""The PDF report: what a reviewer reads must be the numbers in results.json."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reports import pdf
from reports import results as R

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((DATA / "results.json").read_text())


def pdf_text(path: Path) -> str:
    """Text of a PDF via poppler's pdftotext (what the issue's acceptance uses), else pypdf."""
    if shutil.which("pdftotext"):
        out = subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
        )
        return out.stdout
    pypdf = pytest.importorskip("pypdf", reason="needs pdftotext (poppler-utils) or pypdf to read the PDF")
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages)


def n_pages(data: bytes) -> int:
    return data.count(b"/Type /Page\n") + data.count(b"/Type /Page>") + data.count(b"/Type /Page ")


def test_pdf_shows_verdict_numbers_gates_checks_and_provenance(tmp_path, results):
    out = pdf.render(results, tmp_path / "report.pdf", source=DATA)
    assert out.read_bytes().startswith(b"%PDF-")
    text = pdf_text(out)
    assert "VERDICT: FAIL" in text
    assert results["verdict_reason"].split(":")[0] in text
    # Every robust accuracy with its interval, exactly as in results.json (fixture: 92.5%, 51.5%, 2.0%).
    for r in results["robust"]:
        assert R.pct(r["accuracy"]) in text
        assert R.ci(r["ci"]) in text
        assert f"{r['n_robust']}/{r['n']}" in text
    assert [R.pct(r["accuracy"]) for r in results["robust"]] == ["92.5%", "51.5%", "2.0%"]
    assert R.pct(results["clean"]["accuracy"]) in text
    # Gates: the failed one is marked, with its value and threshold.
    assert "min robust accuracy @ eps 0.2" in text
    assert "FAIL" in text and "≥ 0.100" in text and "0.005" in text
    # Sanity checks in plain words, the waiver's reason printed.
    waived = next(c for c in results["sanity_checks"] if c["status"] == "waived")
    assert "WAIVED" in text
    assert "nightly thorough audit runs Square" in " ".join(text.split())
    assert waived["name"] in text
    assert "Why it matters" in text
    # System under test and reproducibility.
    assert results["model"]["sha256"] in text
    assert "151,306" in text
    assert results["environment"]["command_line"] in text
    assert "Resolved configuration" in text and "min_robust_accuracy" in text
    # Per-attack cost table: the PGD row at eps 0.1 shows its measured gradient calls.
    pgd_cost = results["robust"][1]["per_attack_cost"]["pgd"]
    assert f"{pgd_cost['n_backward']:,}" in text
    assert "No example images" not in text  # examples.npz sits next to the fixture


def test_pdf_without_examples_says_so(tmp_path, results):
    src = tmp_path / "run"
    src.mkdir()
    shutil.copy(DATA / "results.json", src / "results.json")
    out = pdf.render(results, tmp_path / "report.pdf", source=src)
    text = pdf_text(out)
    assert "No example images are available (examples.npz was not found" in " ".join(text.split())
    assert "VERDICT: FAIL" in text


def test_pdf_unreliable_failed_check_and_minimal_results(tmp_path, results):
    res = copy.deepcopy(results)
    res["verdict"] = "unreliable"
    res["verdict_reason"] = "sanity check large_eps_breaks_all failed"
    chk = next(c for c in res["sanity_checks"] if c["name"] == "large_eps_breaks_all")
    chk["status"] = "fail"
    chk["detail"] = "At eps 0.5 PGD-20 leaves 63.0% of samples classified correctly."
    # Optional pieces missing: per-class, costs, timing, attack list, config source.
    for r in res["robust"]:
        r.pop("per_class_accuracy")
        r.pop("per_attack_cost")
    for k in ("attacks", "files"):
        res.pop(k)
    # As the runner writes them: a note and a counter among the timings, samples found by check attacks.
    res["timing"] = {
        "total_s": 179.77,
        "checks_s": 172.5,
        "resumed_batches": 2,
        "note": "includes resumed work",
    }
    res["robust"][1].update(found_by_checks={"square": 3}, accuracy_attacks_only=0.53)
    data = pdf.render_pdf_bytes(res, None)
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    text = " ".join(pdf_text(path).split())
    assert "VERDICT: UNRELIABLE" in text
    assert "must not be trusted" in text
    assert "63.0% of samples" in text
    assert "1 failed" in text
    assert "The results hold no per-class robust accuracy" in text
    assert "No example images are available" in text
    assert "Where the time went: total 3 min 0 s, checks 2 min 52 s (includes resumed work)." in text
    assert "the sanity-check attacks broke 3 samples" in text and "attacks alone: 53.0%" in text


def test_pdf_watermark_survival_table(tmp_path, results):
    res = copy.deepcopy(results)
    res["watermark"] = {
        "k": 98,
        "K": 100,
        "p0": 0.12,
        "p_value": 3.2e-85,
        "verified": True,
        "alpha": 1e-6,
        "surrogates": [
            {
                "name": "prune-70",
                "clean_accuracy": 0.91,
                "agreement": 0.93,
                "k": 40,
                "p_value": 1.1e-9,
                "verified": True,
            },
            {
                "name": "copycat-cnn",
                "clean_accuracy": 0.95,
                "agreement": 0.97,
                "k": 14,
                "p_value": 0.31,
                "verified": False,
            },
            {  # the mark is gone, but so is the model: not a removal
                "name": "prune-90",
                "clean_accuracy": 0.41,
                "agreement": 0.4,
                "k": 9,
                "p_value": 0.6,
                "verified": False,
                "removed": False,
            },
        ],
    }
    path = pdf.render(res, tmp_path / "r.pdf", source=DATA)
    text = pdf_text(path)
    assert "Watermark verification and survival" in text
    assert "98/100" in text
    for name, status in (
        ("prune-70", "survived"),
        ("copycat-cnn", "removed"),
        ("prune-90", "lost, model damaged"),
    ):
        line = next(ln for ln in text.splitlines() if name in ln)
        assert status in line
    assert "3.20e-85" in text


def test_pdf_is_a_few_pages_and_refuses_non_results(results):
    data = pdf.render_pdf_bytes(results, DATA)
    assert 4 <= n_pages(data) <= 10
    from robustness.core.errors import UsageError

    with pytest.raises(UsageError, match="schema_version"):
        pdf.render_pdf_bytes({"verdict": "pass"}, None)
