"""The ``corruptions:`` audit section: its config block, its typed result (numbers it refuses, the
heat-map and the strip of examples it shows), its gate, and an audit writing it into
results.json and every report format."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import pytest

from robustness.audit import run_audit
from robustness.config import parse_config
from robustness.core.corruptions.accuracy import corruption_accuracy
from robustness.core.errors import ConfigError
from robustness.core.schema import ResultsError, SectionHeatmap, SectionImages, load_results, parse_results
from robustness.core.sections.corruptions import CorruptionsResult

NAMES = ["gaussian_noise", "contrast", "pixelate"]


@pytest.fixture(scope="module")
def entry(digits_model, digits_test) -> dict:
    """The section's results.json entry, measured on 60 digits."""
    small = digits_test.subset(range(60))
    return corruption_accuracy(digits_model, small.x, small.y, names=NAMES, severities=[1, 3, 5])


def base_config(outdir: Path, **more) -> dict:
    return {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 40, "batch_size": 40},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "pgd", "params": {"steps": 3}}],
        "sanity_checks": {"sample_size": 4},
        "output": {"dir": str(outdir), "formats": ["json"]},
        **more,
    }


def test_the_result_shows_a_heatmap_the_table_and_a_strip_of_examples(entry):
    result = CorruptionsResult.model_validate(entry)
    view = result.view()
    assert view.label == "Corruptions" and "mean corruption accuracy" in view.summary
    (heatmap, strip) = view.figures
    assert isinstance(heatmap, SectionHeatmap) and isinstance(strip, SectionImages)
    assert heatmap.rows == ["Gaussian noise", "Contrast", "Pixelate"] and heatmap.columns == ["1", "3", "5"]
    assert heatmap.values == [row["accuracy"] for row in entry["corruptions"]]
    assert len(strip.images) == len(strip.captions) == 4 and strip.captions[0].startswith("clean: ")
    assert "severity 3" in strip.title
    assert view.table.header == ["corruption", "severity 1", "severity 3", "severity 5", "mean"]
    assert len(view.table.rows) == 3
    pairs = dict(view.pairs)
    assert pairs["constants"] == "CIFAR-10-C" and pairs["corruptions x severities"] == "3 x 3 on n=60"
    assert any("interval is taken over samples" in note.text for note in view.notes)
    # Stored small: grey 8x8 examples, three decimals.
    assert len(json.dumps(entry["examples"])) < 5000


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("corruptions", 0, "accuracy", 1), 1.3, "not in [0, 1]"),
        (("mean_corruption_accuracy",), 0.2, "is not the mean of the 9 accuracies"),
        (("corruptions", 1, "correct", 0), 61, "larger than n"),
        (("corruptions", 2, "accuracy"), [0.5], "1 accuracies for 3 severities"),
    ],
)
def test_impossible_numbers_are_refused_when_a_results_file_is_read(
    entry, fixture_results, path, value, message
):
    data = copy.deepcopy(fixture_results)
    data["corruptions"] = copy.deepcopy(entry)
    parse_results(copy.deepcopy(data))  # as measured: accepted
    where = data["corruptions"]
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    with pytest.raises(ResultsError, match=re.escape(message)):
        parse_results(data)


@pytest.fixture(scope="module")
def fixture_results() -> dict:
    return json.loads((Path(__file__).parents[1] / "reports" / "data" / "results.json").read_text())


def test_the_config_block_is_checked_before_the_audit_runs(tmp_path):
    cfg = parse_config(base_config(tmp_path, corruptions={}))
    assert cfg.corruptions.severities == [1, 2, 3, 4, 5] and cfg.corruptions.names is None
    from robustness.audit.sections.corruptions import Corruptions

    for block, field in (
        ({"names": ["fogg"]}, "corruptions.names"),
        ({"severities": [2, 2]}, "corruptions.severities"),
    ):
        cfg = parse_config(base_config(tmp_path, corruptions=block))
        with pytest.raises(ConfigError) as raised:
            Corruptions.check_config(cfg.corruptions, cfg)
        assert raised.value.field == field
    with pytest.raises(ConfigError):
        parse_config(base_config(tmp_path, corruptions={"severities": [6]}))
    with pytest.raises(ConfigError):
        parse_config(base_config(tmp_path, corruptions={"min_corruption_accuracy": 1.5}))


def test_an_audit_writes_the_section_and_its_gate_into_every_format(tmp_path):
    from reports import RENDERERS

    outdir = tmp_path / "run"
    cfg = base_config(
        outdir,
        corruptions={"names": ["impulse_noise", "brightness"], "min_corruption_accuracy": 0.99},
        gates={"judge": "point"},
    )
    cfg["output"]["formats"] = RENDERERS.names()
    res = run_audit(cfg)
    section = res["corruptions"]
    assert [row["name"] for row in section["corruptions"]] == ["impulse_noise", "brightness"]
    assert section["n"] == 40 and section["seed"] == 0
    (gate,) = [g for g in res["gates"] if g["kind"] == "min_corruption_accuracy"]
    assert gate["value"] == section["mean_corruption_accuracy"] and gate["judge"] == "point"
    assert gate["passed"] is (section["mean_corruption_accuracy"] >= 0.99)
    typed = load_results(outdir / "results.json")
    assert isinstance(typed.sections["corruptions"], CorruptionsResult)
    assert not res.get("renderer_errors")
    assert "**Corruptions:**" in (outdir / "summary.md").read_text()
    assert "min_corruption_accuracy" in (outdir / "junit.xml").read_text()
    pypdf = pytest.importorskip("pypdf")
    text = " ".join(
        p.extract_text() for p in pypdf.PdfReader(io.BytesIO((outdir / "report.pdf").read_bytes())).pages
    )
    assert "Common corruptions" in text and "Impulse noise" in text
    if (outdir / "report.html").exists():
        assert "Common corruptions" in (outdir / "report.html").read_text()
