"""A sanity check and an audit section are one file each.

A toy check and a toy section, registered through the same calls that a file in
``robustness/audit/checks/`` or ``robustness/audit/sections/`` makes, are found in the config
(its schema, its validation), run in a small audit, and shown in the results and the reports.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from robustness.audit import run_audit
from robustness.audit.check import SANITY_CHECKS, AttackCheck, CheckResult, EpsStep, register_check
from robustness.audit.section import AUDIT_SECTIONS, AuditSection, register_section
from robustness.config import CHECKS, json_schema, parse_config
from robustness.core.errors import ConfigError
from robustness.core.schema import RESULT_SECTIONS, SectionResult, SectionView, load_results


def small_config(outdir: Path, **more: Any) -> dict[str, Any]:
    return {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 16, "batch_size": 16},
        "threat": {"norm": "linf", "eps": [0.05, 0.15]},
        "attacks": [{"name": "pgd", "params": {"steps": 5}}],
        "sanity_checks": {"sample_size": 4},
        "output": {"dir": str(outdir), "formats": ["json", "md", "pdf"]},
        **more,
    }


def pdf_text(path: Path) -> str:
    pypdf = pytest.importorskip("pypdf")
    return " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(path.read_bytes())).pages)


@pytest.fixture
def toy_check():
    """A toy sanity check: it reads the ledger at each eps and fails when anything is left robust."""

    @register_check
    class StandingCount(AttackCheck):
        name = "toy_standing_count"
        title = "Toy: nothing is left standing"
        explanation = "A toy check that proves a check is one file."
        measures = "the ledger's robust count at each eps"

        def at_eps(self, step: EpsStep) -> None:
            self.per_eps.append({"eps": step.eps, "n_robust": self.audit.ledger.n_robust()})

        def judge(self) -> CheckResult:
            left = sum(row["n_robust"] for row in self.per_eps)
            status = "fail" if left else "pass"
            return self.result(
                status, f"The toy counted {left} robust samples over the grid.", {"per_eps": self.per_eps}
            )

    yield StandingCount
    SANITY_CHECKS._items.pop(StandingCount.name, None)


class ToyBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")
    greeting: str = "hello"


class ToyResult(SectionResult):
    """The toy section's result."""

    title = "Toy section"
    greeting: str | None = None
    n_robust_last: int | None = None

    def view(self) -> SectionView:
        return SectionView(
            title=self.title,
            label="Toy",
            summary=f"{self.greeting}, {self.n_robust_last} samples robust at the largest eps",
            pairs=[("greeting", str(self.greeting))],
        )


@pytest.fixture
def toy_section():
    """A toy audit section with its config block, result, view and gate."""

    @register_section
    class Toy(AuditSection):
        name = "toy"
        description = "a toy section"
        config = ToyBlock
        result = ToyResult

        def run(self) -> dict[str, Any]:
            return {"greeting": self.block.greeting, "n_robust_last": self.audit.ledger.n_robust()}

        def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
            from robustness.gates import gate

            return [gate("toy_greets", "toy_greets", None, True, 1.0, ">=", 1.0, "point", "the toy greeted")]

    yield Toy
    AUDIT_SECTIONS._items.pop("toy", None)
    RESULT_SECTIONS._items.pop("toy", None)


def test_builtin_checks_are_files_in_the_documented_order():
    assert list(CHECKS) == [
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
    assert SANITY_CHECKS.package == "robustness.audit.checks"
    assert all(c.title and c.explanation and c.measures for c in SANITY_CHECKS.items().values())
    assert "watermark" in AUDIT_SECTIONS and AUDIT_SECTIONS.package == "robustness.audit.sections"


def test_a_toy_check_is_found_everywhere(toy_check, tmp_path):
    # the config: its waiver names and schema
    assert CHECKS["toy_standing_count"] == toy_check.title and list(CHECKS)[-1] == "toy_standing_count"
    waive = json_schema()["$defs"]["SanityChecksSection"]["properties"]["waive"]
    assert "toy_standing_count" in waive["propertyNames"]["enum"]
    cfg = small_config(tmp_path / "x")
    parse_config({**cfg, "sanity_checks": {"waive": {"toy_standing_count": "a toy"}}})
    with pytest.raises(ConfigError, match="did you mean 'toy_standing_count'"):
        parse_config({**cfg, "sanity_checks": {"waive": {"toy_standing_cout": "a toy"}}})
    # a small audit runs it, and its outcome carries its title and explanation
    out = tmp_path / "run"
    res = run_audit(small_config(out))
    toy = next(c for c in res["sanity_checks"] if c["name"] == "toy_standing_count")
    assert res["sanity_checks"][-1] is toy
    assert toy["title"] == toy_check.title and toy["explanation"] == toy_check.explanation
    assert [row["eps"] for row in toy["measured"]["per_eps"]] == [0.05, 0.15]
    assert [row["n_robust"] for row in toy["measured"]["per_eps"]] == [r["n_robust"] for r in res["robust"]]
    assert toy["status"] == (
        "fail" if res["robust"][-1]["n_robust"] or res["robust"][0]["n_robust"] else "pass"
    )
    # the reports show it, read from the result
    if toy["status"] == "fail":
        assert toy_check.title in (out / "summary.md").read_text()
    text = " ".join(pdf_text(out / "report.pdf").split())
    assert toy_check.title in text and "A toy check that proves a check is one file." in text
    # and a results file read back by any reader carries it
    assert any(c.name == "toy_standing_count" and c.explanation for c in load_results(out).sanity_checks)


def test_a_toy_section_is_found_everywhere(toy_section, tmp_path):
    # the config: its schema and validation
    props = json_schema()["properties"]
    assert "toy" in props and "watermark" in props
    with pytest.raises(ConfigError) as raised:
        parse_config(small_config(tmp_path / "x", toy={"greting": "hi"}))
    assert raised.value.field == "toy.greting" and "did you mean 'greeting'" in raised.value.message
    assert parse_config(small_config(tmp_path / "x", toy={})).toy == ToyBlock()
    # a small audit runs it; its result is typed and its gate judged
    out = tmp_path / "run"
    res = run_audit(small_config(out, toy={"greeting": "bonjour"}))
    assert res["toy"] == {"greeting": "bonjour", "n_robust_last": res["robust"][-1]["n_robust"]}
    assert res["watermark"] is None
    assert res["gates"][-1]["name"] == "toy_greets" and res["gates"][-1]["passed"] is True
    on_disk = json.loads((out / "results.json").read_text())
    at = list(on_disk).index("files")
    sections = list(on_disk)[at + 1 : at + 1 + len(RESULT_SECTIONS.names())]  # after files, by name
    assert sections == sorted(RESULT_SECTIONS.names()) and {"toy", "watermark"} <= set(sections)
    loaded = load_results(out)
    assert isinstance(loaded.sections["toy"], ToyResult)
    # every renderer shows it
    summary = (out / "summary.md").read_text()
    assert f"**Toy:** bonjour, {res['robust'][-1]['n_robust']} samples robust at the largest eps" in summary
    assert "Toy section" in pdf_text(out / "report.pdf")


def test_an_audit_without_the_toy_section_records_none(toy_section, tmp_path):
    res = run_audit(
        small_config(tmp_path / "run", output={"dir": str(tmp_path / "run"), "formats": ["json"]})
    )
    assert res["toy"] is None and all(g["name"] != "toy_greets" for g in res["gates"])


def test_a_check_must_declare_what_the_reports_show():
    class Untitled(AttackCheck):
        name = "toy_untitled"
        title = "Toy"
        measures = "nothing"

    with pytest.raises(ValueError, match="declares no explanation"):
        register_check(Untitled)
    assert "toy_untitled" not in SANITY_CHECKS
