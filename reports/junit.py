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
from typing import Any

from reports import results as R

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


def _gate_time(g: dict[str, Any], res: dict[str, Any]) -> float:
    """A gate judging one eps takes that eps's attack time; other gates cost nothing."""
    _, _, at = str(g.get("name", "")).partition("@")
    try:
        e = float(at)
    except ValueError:
        return 0.0
    return next(
        (float(r.get("time_s") or 0) for r in res.get("robust") or [] if abs(float(r["eps"]) - e) < 1e-12),
        0.0,
    )


def _gate_case(g: dict[str, Any], res: dict[str, Any]) -> tuple[ET.Element, str]:
    case = ET.Element("testcase", classname="robustness.gates", name=_t(g.get("name", "?")))
    case.set("time", _time(_gate_time(g, res)))
    detail = g.get("detail") or (
        f"value {R.num(g.get('value'))}, threshold {R.num(g.get('threshold'))}, judged on {g.get('judge', 'n/a')}"
    )
    if g.get("passed"):
        ET.SubElement(case, "system-out").text = _t(detail)
        return case, "pass"
    fail = ET.SubElement(
        case,
        "failure",
        type="GateFailed",
        message=_t(
            f"{g.get('name')}: value {R.num(g.get('value'))}, required {R.gate_comparator(g.get('name', ''))} "
            f"{R.num(g.get('threshold'))}"
        ),
    )
    fail.text = _t(f"{detail}\nverdict: {res.get('verdict')} - {res.get('verdict_reason', '')}")
    return case, "failure"


def _check_case(c: dict[str, Any]) -> tuple[ET.Element, str]:
    case = ET.Element(
        "testcase", classname="robustness.sanity_checks", name=_t(c.get("name", "?")), time="0.000"
    )
    status = c.get("status")
    title = c.get("title") or c.get("name", "?")
    detail = c.get("detail") or ""
    if status == "pass":
        ET.SubElement(case, "system-out").text = _t(f"{title}: {detail}")
        return case, "pass"
    if status == "skip":
        ET.SubElement(case, "skipped", message=_t(f"skipped: {detail or title}"))
        return case, "skipped"
    if status == "waived":
        ET.SubElement(
            case, "skipped", type="Waived", message=_t(f"waived: {c.get('waiver') or 'no reason given'}")
        )
        ET.SubElement(case, "system-out").text = _t(
            f"{title}: {detail}\nwaived by the user, reason: {c.get('waiver') or 'no reason given'}"
        )
        return case, "skipped"
    # "fail", or any status this renderer does not know: never shown as a pass.
    why = R.CHECK_EXPLANATIONS.get(c.get("name", ""), "")
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


def to_xml(results: dict[str, Any]) -> str:
    """The JUnit document as a string."""
    R.check_schema(results)
    model = results.get("model") or {}
    data = results.get("data") or {}
    props = {
        "verdict": results.get("verdict"),
        "verdict_reason": results.get("verdict_reason", ""),
        "model": model.get("spec", ""),
        "model_sha256": model.get("sha256", ""),
        "data": data.get("spec", ""),
        "data_sha256": data.get("sha256", ""),
        "schema_version": results.get("schema_version"),
        "tool_version": results.get("tool_version", ""),
    }
    gates = [_gate_case(g, results) for g in results.get("gates") or []]
    checks = [_check_case(c) for c in results.get("sanity_checks") or []]
    root = ET.Element(
        "testsuites",
        name=_t(f"robustness audit of {model.get('spec', '?')}"),
        tests=str(len(gates) + len(checks)),
        failures=str(sum(1 for _, s in gates + checks if s == "failure")),
        errors="0",
        time=_time((results.get("timing") or {}).get("total_s", 0.0)),
    )
    root.append(_suite("robustness.gates", gates, props))
    root.append(_suite("robustness.sanity_checks", checks, props))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def render(results: dict[str, Any], path: str | Path) -> Path:
    """Write junit.xml atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_xml(results))
