"""The one typed result: the results.json schema, its loader and migration, and plug-in sections.

``tests/reports/data/results.json`` is a results file written by robustness-audit 0.1.0 (schema
1.0) and stays one: every reader must keep reading it.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reports import as_results, markdown, pdf
from robustness.core.errors import UsageError
from robustness.core.schema import (
    CHECK_EXPLANATIONS_1_0,
    RESULT_SECTIONS,
    SCHEMA_VERSION,
    AuditResults,
    ResultsError,
    SectionResult,
    SectionView,
    load_results,
    parse_results,
    results_json_schema,
    section,
)

DATA = Path(__file__).parent / "data"
OLD = DATA / "results.json"  # written by 0.1.0, schema 1.0


@pytest.fixture(scope="module")
def old_raw() -> dict:
    return json.loads(OLD.read_text())


def test_the_fixture_is_a_0_1_0_file(old_raw):
    assert old_raw["tool_version"] == "0.1.0" and old_raw["schema_version"] == "1.0"
    assert all({"kind", "comparator"}.isdisjoint(g) for g in old_raw["gates"])  # names only


def test_a_0_1_0_file_is_migrated_on_reading(old_raw):
    res = load_results(OLD)
    assert isinstance(res, AuditResults)
    assert res.schema_version == SCHEMA_VERSION == "1.1" and res.file_schema_version == "1.0"
    assert [(g.kind, g.eps, g.comparator, g.threshold) for g in res.gates] == [
        ("min_clean_accuracy", None, ">=", 0.9),
        ("min_robust_accuracy", 0.05, ">=", 0.5),
        ("min_robust_accuracy", 0.1, ">=", 0.25),
        ("min_robust_accuracy", 0.2, ">=", 0.1),
    ]
    # Every check of a known name gains the explanation 0.1.0's reports printed for it.
    assert all(c.explanation == CHECK_EXPLANATIONS_1_0[c.name] for c in res.sanity_checks)
    # Nothing else changes: the migrated file is the old one plus the explicit gate fields and
    # the check explanations.
    migrated = res.to_dict()
    assert list(migrated) == list(old_raw)
    assert {k for k in migrated if migrated[k] != old_raw[k]} == {"schema_version", "gates", "sanity_checks"}
    for old_gate, new_gate in zip(old_raw["gates"], migrated["gates"]):
        assert {k: v for k, v in new_gate.items() if k in old_gate} == old_gate
    for old_check, new_check in zip(old_raw["sanity_checks"], migrated["sanity_checks"]):
        assert {k: v for k, v in new_check.items() if k != "explanation"} == old_check
    # Reading never rewrites the file.
    assert json.loads(OLD.read_text()) == old_raw


@pytest.mark.parametrize(
    ("name", "kind", "eps", "comparator"),
    [
        ("max_drop@0.1", "max_drop", 0.1, "<="),
        ("watermark_verified", "watermark_verified", None, "<="),
        ("min_robust_accuracy@8/255", "min_robust_accuracy@8/255", None, ">="),
        ("custom", "custom", None, ">="),
    ],
)
def test_migrating_gate_names(old_raw, name, kind, eps, comparator):
    raw = copy.deepcopy(old_raw)
    raw["gates"].append({"name": name, "passed": True, "value": 0.0, "threshold": 0.5})
    gate = parse_results(raw).gates[-1]
    assert (gate.kind, gate.eps, gate.comparator) == (kind, eps, comparator)


def test_a_typed_result_writes_back_what_it_read(old_raw):
    res = parse_results(old_raw)
    again = parse_results(res.to_dict())
    assert again.to_dict() == res.to_dict()
    assert again.file_schema_version == "1.1"
    # Ints stay ints and unknown keys stay: a newer 1.x file reads and writes back unchanged.
    raw = res.to_dict()
    raw["schema_version"] = "1.7"
    raw["clean"]["brand_new_metric"] = {"x": 1}
    raw["robust"][0]["per_attack_cost"]["pgd"]["n_queries"] = 0
    back = parse_results(raw).to_dict()
    assert back == raw and back["clean"]["brand_new_metric"] == {"x": 1}
    assert isinstance(back["gates"][0]["threshold"], float) and back["data"]["n"] == 200


def test_versions_and_shapes_that_are_refused(old_raw, tmp_path):
    with pytest.raises(UsageError, match="results schema 2.0; this version reads schema 1.x"):
        parse_results({**old_raw, "schema_version": "2.0"})
    with pytest.raises(UsageError, match="not an audit results object"):
        parse_results([1, 2])
    with pytest.raises(UsageError, match="lacks the required key"):
        parse_results({k: v for k, v in old_raw.items() if k != "gates"})
    # In the current schema a gate must say what it judged.
    raw = load_results(OLD).to_dict()
    del raw["gates"][1]["comparator"]
    with pytest.raises(ResultsError) as exc:
        parse_results(raw, "run/results.json")
    assert exc.value.field == "gates[1].comparator" and "has no comparator" in exc.value.message
    raw["gates"][1]["comparator"] = "=>"
    with pytest.raises(ResultsError, match="'=>' is not one of") as exc:
        parse_results(raw)
    assert exc.value.field == "gates[1].comparator"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="is not valid JSON"):
        load_results(tmp_path / "bad.json")


def test_the_json_schema_of_results(old_raw):
    schema = results_json_schema()
    assert "Schema version 1.1" in schema["description"]
    assert {"clean", "robust", "gates", "sanity_checks", "verdict", "watermark"} <= set(schema["properties"])
    gate = schema["$defs"]["Gate"]
    assert {"kind", "eps", "comparator"} <= set(gate["required"])
    assert gate["properties"]["comparator"]["enum"] == [">=", "<="]
    assert schema["properties"]["verdict"]["enum"] == ["pass", "fail", "unreliable"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(load_results(OLD).to_dict(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(old_raw, schema)  # a 1.0 file lacks the explicit gate fields


def test_cli_schema_results_prints_it():
    out = subprocess.run(
        [sys.executable, "-m", "robustness", "schema", "--results"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == json.loads(json.dumps(results_json_schema()))
    config = subprocess.run(
        [sys.executable, "-m", "robustness", "schema"], capture_output=True, text=True, check=True
    )
    assert "OutputSection" in json.loads(config.stdout)["$defs"]  # alone: still the config's


def test_the_watermark_section_is_typed_and_shown(old_raw, tmp_path):
    raw = copy.deepcopy(old_raw)
    raw["watermark"] = {
        "k": 97,
        "K": 100,
        "p0": 0.1,
        "p_value": 1e-90,
        "alpha": 1e-6,
        "verified": True,
        "surrogates": [{"name": "prune:amount=0.5", "clean_accuracy": 0.9, "k": 60, "verified": True}],
    }
    res = parse_results(raw)
    assert list(res.sections) == ["watermark"] and res.sections["watermark"].k == 97
    assert list(res.to_dict()).index("watermark") == list(raw).index("watermark")  # where it was
    assert "**Watermark:** 97/100 trigger matches, p-value 1.00e-90, verified." in markdown.to_markdown(res)
    raw["watermark"]["k"] = 101
    with pytest.raises(ResultsError, match="101 trigger matches out of 100") as exc:
        parse_results(raw)
    assert exc.value.field == "watermark.k"
    raw["watermark"]["k"] = "97"
    with pytest.raises(ResultsError, match="'97' is not a non-negative integer"):
        parse_results(raw)


@pytest.fixture
def toy_section():
    """A section registered the way a file in robustness/core/sections/ registers one."""

    @section("toy_privacy")
    class ToyPrivacy(SectionResult):
        """Membership inference against the model."""

        title = "Privacy: membership inference"
        advantage: float | None = None

        def check_numbers(self, check, path):
            check.fraction(self.advantage, f"{path}.advantage")

        def view(self):
            return SectionView(
                title=self.title,
                label="Privacy",
                summary=f"membership advantage {self.advantage:.2f}",
                pairs=[("advantage", f"{self.advantage:.2f}")],
            )

    yield ToyPrivacy
    RESULT_SECTIONS._items.pop("toy_privacy", None)


def test_a_new_section_is_one_model(toy_section, old_raw, tmp_path):
    raw = {**old_raw, "toy_privacy": {"advantage": 0.12}}
    res = parse_results(raw)
    assert isinstance(res.sections["toy_privacy"], toy_section)
    assert "toy_privacy" in results_json_schema()["properties"]
    assert "**Privacy:** membership advantage 0.12" in markdown.to_markdown(res)
    path = pdf.render(res, tmp_path / "report.pdf", source=DATA)
    text = _pdf_text(path)
    assert "Privacy: membership inference" in text and "0.12" in text
    with pytest.raises(ResultsError) as exc:
        parse_results({**old_raw, "toy_privacy": {"advantage": 1.5}})
    assert exc.value.field == "toy_privacy.advantage"


def _pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages)


def test_renderers_get_the_typed_result(old_raw, tmp_path):
    """A results dict handed to a renderer is typed (and migrated) first; a typed one is kept."""
    res = as_results(old_raw)
    assert isinstance(res, AuditResults) and as_results(res) is res
    shutil.copy(DATA / "examples.npz", tmp_path / "examples.npz")
    assert markdown.to_markdown(old_raw) == markdown.to_markdown(res)
