"""The audit's ``certify:`` section: config, results.json, every report format, the typed result."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from reports import output_formats
from robustness.audit import run_audit
from robustness.config import parse_config
from robustness.core.errors import ConfigError
from robustness.core.schema import CurveSeries, ResultsError, SectionCurve, load_results, parse_results
from robustness.core.sections.certify import CertifyResult

CERTIFY = {
    "sigma": 0.25,
    "n0": 50,
    "n": 500,
    "attack_params": {"steps": 5, "loss": "ce"},
    "noise_samples": 4,
    "eot_samples": 2,
    "votes": 100,
    "min_certified_accuracy": {0.25: 0.2},
}


def l2_config(outdir: Path, **more: Any) -> dict[str, Any]:
    return {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 16, "batch_size": 16},
        "threat": {"norm": "l2", "eps": [0.25, 0.5]},
        "attacks": [{"name": "pgd", "params": {"steps": 5}}],
        "sanity_checks": {"sample_size": 4},
        "output": {"dir": str(outdir), "formats": output_formats()},
        **more,
    }


@pytest.fixture(scope="module")
def certified_audit(noisy_digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("certify-audit")
    results = run_audit(l2_config(out, certify=CERTIFY), model=noisy_digits_model)
    return out, results


def test_the_audit_writes_the_certify_section_into_results_and_every_report(certified_audit):
    out, results = certified_audit
    entry = results["certify"]
    assert [r["eps"] for r in entry["rows"]] == [0.25, 0.5]
    assert entry["n_samples"] == 16 and entry["n"] == 500 and entry["bracket_holds"]
    for row in entry["rows"]:
        assert row["certified_accuracy"] <= row["empirical_accuracy"] + row["contradictions_allowed"] / 16
    assert entry["rows"][0]["certified_accuracy"] >= 0.5  # the noise-trained model certifies most at 0.25
    gate = next(g for g in results["gates"] if g["kind"] == "min_certified_accuracy")
    assert (
        gate["eps"] == 0.25
        and gate["passed"]
        and gate["value"] == pytest.approx(entry["rows"][0]["certified_ci"][0])
    )

    typed = load_results(out / "results.json")
    assert isinstance(typed.sections["certify"], CertifyResult)
    assert not (typed.renderer_errors or {})
    assert "Certified (sigma 0.25)" in (out / "summary.md").read_text()
    assert "min_certified_accuracy@0.25" in (out / "junit.xml").read_text()
    if (out / "report.html").exists():
        assert "Certified robustness" in (out / "report.html").read_text()
    pypdf = pytest.importorskip("pypdf")
    text = " ".join(
        p.extract_text() for p in pypdf.PdfReader(io.BytesIO((out / "report.pdf").read_bytes())).pages
    )
    assert "Certified robustness (randomized smoothing)" in text
    assert "certified but broken" in text


def test_the_view_shows_the_bracket_as_a_table_and_a_curve(certified_audit):
    _, results = certified_audit
    view = CertifyResult.model_validate(results["certify"]).view()
    assert [row[0] for row in view.table.rows] == ["0.250", "0.500"]
    assert view.table.header[1].startswith("certified") and view.table.header[2].startswith("attacked")
    (curve,) = view.figures
    assert isinstance(curve, SectionCurve)
    certified, attacked = curve.series
    assert isinstance(certified, CurveSeries) and certified.x[0] == 0.0
    assert certified.y == sorted(certified.y, reverse=True)
    assert attacked.x == [0.25, 0.5] and attacked.style == "points"
    assert "lower bound" in view.notes[0].text and "upper bound" in view.notes[0].text
    assert dict(view.pairs)["noise sigma"] == "0.250"


def test_impossible_certify_numbers_are_refused(certified_audit):
    out, _ = certified_audit
    data = json.loads((out / "results.json").read_text())
    data["certify"]["curve"][-1]["radius"] = data["certify"]["max_radius"] * 2
    data["certify"]["curve"][-1]["certified_accuracy"] = 0.5
    with pytest.raises(ResultsError) as raised:
        parse_results(data)
    assert "certify.curve" in raised.value.field


def test_the_section_view_flags_certified_samples_broken_beyond_monte_carlo_error(certified_audit):
    _, results = certified_audit
    entry = json.loads(json.dumps(results["certify"]))
    entry["rows"][1]["contradictions"] = entry["rows"][1]["contradictions_allowed"] + 3
    view = CertifyResult.model_validate(entry).view()
    assert "INCONSISTENT" in view.summary
    assert any("do not trust" in note.text for note in view.notes)


def test_the_certify_block_needs_an_l2_audit(tmp_path):
    cfg = l2_config(tmp_path, certify={"sigma": 0.25})
    cfg["threat"] = {"norm": "linf", "eps": [0.1]}
    with pytest.raises(ConfigError) as raised:
        run_audit(cfg)
    assert raised.value.field == "threat.norm"
    with pytest.raises(ConfigError) as raised:
        parse_config(l2_config(tmp_path, certify={"sigma": 0.25, "nn": 5}))
    assert "nn" in str(raised.value)
    bad_gate = l2_config(tmp_path, certify={"sigma": 0.25, "min_certified_accuracy": {0.3: 0.5}})
    with pytest.raises(ConfigError) as raised:
        run_audit(bad_gate)
    assert raised.value.field == "certify.min_certified_accuracy"
