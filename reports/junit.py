"""JUnit XML for CI dashboards: one testcase per gate and per sanity check.

Layout: ``testsuites`` > two ``testsuite`` elements, ``robustness.gates`` and
``robustness.sanity_checks`` (with the verdict, model and data hashes as properties) >
``testcase(classname, name, time)``.

- A failed gate or a failed sanity check is a ``failure`` (message = one line, text = the
  full detail).
- A skipped check is ``skipped`` with its reason.
- A **waived** check is reported as ``skipped`` with the message ``waived: <reason>``, not as
  a pass: the check's verdict was set aside by a person, and dashboards should keep that
  visible rather than paint it green. Its detail is kept in ``system-out``.

Passing testcases carry their detail in ``system-out``. The job's status comes from the exit
code of ``robustness audit``; this file is for display. The output validates against the
Jenkins ``junit-10.xsd`` (shipped as ``reports/junit-10.xsd``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import as_results, renderer
from reports import results as report_results
from robustness.core import formatting

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults, CheckOutcome, Gate

SCHEMA = Path(__file__).with_name("junit-10.xsd")
# XML 1.0 forbids most control characters, and UTF-8 lone surrogates (which JSON allows); a
# string from the results must never make the file unreadable or unwritable.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _t(text: Any) -> str:
    return _ILLEGAL.sub("?", "" if text is None else str(text))


def _time(t: Any) -> str:
    """Surefire time: at most three decimals, no exponent."""
    try:
        v = max(0.0, float(t))
    except (TypeError, ValueError):
        v = 0.0
    return f"{v:.3f}"


def _gate_time(g: Gate, res: AuditResults) -> float:
    """A gate judging one eps takes that eps's attack time; other gates cost nothing."""
    row = res.row_at(g.eps)
    return float(row.time_s or 0) if row is not None else 0.0


def _gate_case(g: Gate, res: AuditResults) -> tuple[ET.Element, str]:
    case = ET.Element("testcase", classname="robustness.gates", name=_t(g.name))
    case.set("time", _time(_gate_time(g, res)))
    detail = g.detail or (
        f"value {formatting.num(g.value)}, threshold {formatting.num(g.threshold)}, judged on {g.judge or 'n/a'}"
    )
    if g.passed:
        ET.SubElement(case, "system-out").text = _t(detail)
        return case, "pass"
    fail = ET.SubElement(
        case,
        "failure",
        type="GateFailed",
        message=_t(
            f"{g.name}: value {formatting.num(g.value)}, required {report_results.gate_symbol(g)} {formatting.num(g.threshold)}"
        ),
    )
    fail.text = _t(f"{detail}\nverdict: {res.verdict} - {res.verdict_reason or ''}")
    return case, "failure"


def _check_case(c: CheckOutcome) -> tuple[ET.Element, str]:
    case = ET.Element("testcase", classname="robustness.sanity_checks", name=_t(c.name), time="0.000")
    status = c.status
    title = c.title or c.name
    detail = c.detail or ""
    if status == "pass":
        ET.SubElement(case, "system-out").text = _t(f"{title}: {detail}")
        return case, "pass"
    if status == "skip":
        ET.SubElement(case, "skipped", message=_t(f"skipped: {detail or title}"))
        return case, "skipped"
    if status == "waived":
        ET.SubElement(case, "skipped", type="Waived", message=_t(f"waived: {c.waiver or 'no reason given'}"))
        ET.SubElement(case, "system-out").text = _t(
            f"{title}: {detail}\nwaived by the user, reason: {c.waiver or 'no reason given'}"
        )
        return case, "skipped"
    # "fail", or any status this renderer does not know: never shown as a pass.
    why = c.explanation or ""
    fail = ET.SubElement(case, "failure", type="SanityCheckFailed", message=_t(f"{title} (status {status})"))
    fail.text = _t(
        f"{detail}\n{why}\nA failed sanity check makes the audit unreliable: the robust accuracy may be too high."
    )
    return case, "failure"


def _suite(name: str, cases: list[tuple[ET.Element, str]], props: dict[str, Any]) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(cases)),
        failures=str(sum(1 for _, s in cases if s == "failure")),
        errors="0",
        skipped=str(sum(1 for _, s in cases if s == "skipped")),
        time=_time(sum(float(c.get("time", 0)) for c, _ in cases)),
    )
    if props:
        pe = ET.SubElement(suite, "properties")
        for k, v in props.items():
            ET.SubElement(pe, "property", name=k, value=_t(v))
    for c, _ in cases:
        suite.append(c)
    return suite


def to_xml(results: AuditResults | dict[str, Any]) -> str:
    """The JUnit document as a string."""
    results = as_results(results)
    model_spec = results.model.spec if results.model else None
    data = results.data
    props = {
        "verdict": results.verdict,
        "verdict_reason": results.verdict_reason or "",
        "model": model_spec or "",
        "model_sha256": (results.model.sha256 if results.model else None) or "",
        "data": (data.spec if data else None) or "",
        "data_sha256": (data.sha256 if data else None) or "",
        "schema_version": results.file_schema_version,
        "tool_version": results.tool_version or "",
    }
    gates = [_gate_case(g, results) for g in results.gates]
    checks = [_check_case(c) for c in results.sanity_checks]
    root = ET.Element(
        "testsuites",
        name=_t(f"robustness audit of {model_spec or '?'}"),
        tests=str(len(gates) + len(checks)),
        failures=str(sum(1 for _, s in gates + checks if s == "failure")),
        errors="0",
        time=_time((results.timing.total_s if results.timing else None) or 0.0),
    )
    root.append(_suite("robustness.gates", gates, props))
    root.append(_suite("robustness.sanity_checks", checks, props))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


@renderer("junit", "junit.xml", aliases=("xml",), suffixes=(".xml",), order=20)
def render(results: AuditResults | dict[str, Any], path: str | Path, *, source: Path | None = None) -> Path:
    """Write junit.xml atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_xml(results))
