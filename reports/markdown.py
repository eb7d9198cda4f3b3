"""summary.md: the audit at a glance, for pull requests and GitHub's job summary.

Every string taken from the results (model and data specs, gate and check names, details,
waiver reasons, versions) is shown literally: a model spec such as ``<img src=x onerror=...>``
or ``**bold** | pipe`` must neither become markup on GitHub nor break a table. Plain text goes
through :func:`_text` (Markdown and HTML escaped, one line), identifiers through :func:`_code`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import as_results, renderer
from reports import results as report_results
from robustness.core import formatting

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults, Gate, RobustRow

ICON = {"pass": "✅", "fail": "❌", "unreliable": "⚠️"}

# Characters that start Markdown markup anywhere in a line (GFM: emphasis, code, links, tables,
# strikethrough, backslash escapes). The escapes render as the character itself.
_MD_ANYWHERE = re.compile(r"([\\`*\[\]|~])")
# An underscore between two word characters never starts emphasis in GFM (min_robust_accuracy
# stays readable); elsewhere it may.
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# Raw HTML (tags, comments, declarations) and autolinks start with '<' and one of these; entity
# references with '&'. Anything else is shown as typed, so "0.005 < 0.1" stays as it is.
_HTML_LT = re.compile(r"<(?=[A-Za-z/!?])")
_HTML_AMP = re.compile(r"&(?=#|[A-Za-z0-9]+;)")
# Control characters and lone surrogates (valid in JSON, not in UTF-8) are written as escapes.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# A line that starts with these becomes a heading, quote, list, rule or setext underline.
_BLOCK_START = re.compile(r"^(\d*)([#>+=.)-])")


def _plain(value: Any) -> str:
    """One line of printable text: whitespace runs become one space, the unprintable escapes."""
    s = " ".join(str(value).split())
    return _UNPRINTABLE.sub(
        lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), s
    )


def _text(value: Any, *, line_start: bool = False) -> str:
    """Plain text from the results, escaped for Markdown and HTML, on one line (a newline would
    end a table row or start a block). Also safe inside a table cell."""
    s = _plain(value)
    s = _HTML_AMP.sub("&amp;", s)
    s = _HTML_LT.sub("&lt;", s)
    s = _MD_ANYWHERE.sub(r"\\\1", s)
    s = _MD_UNDERSCORE.sub(r"\\_", s)
    if line_start:
        s = _BLOCK_START.sub(r"\1\\\2", s)
    return s


def _code(value: Any, *, table: bool = False) -> str:
    """An identifier as inline code, shown exactly: the fence is longer than any run of
    backticks inside (CommonMark), and HTML is never parsed in code. In a table a pipe still
    splits the cell, even inside code, so it is escaped there (GFM removes the backslash)."""
    s = _plain(value)
    if table:
        s = s.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    # One space on each side is stripped by the renderer; it keeps a leading or trailing
    # backtick from merging with the fence.
    return f"{fence} {s} {fence}" if longest else f"{fence}{s}{fence}"


def _gate_line(g: Gate) -> str:
    mark = "✅" if g.passed else "❌"
    return (
        f"{mark} {_text(g.kind.replace('_', ' '))} {report_results.gate_symbol(g)} {_text(formatting.num(g.threshold))} "
        f"(value {_text(formatting.num(g.value))})"
    )


def _gates_at(results: AuditResults, row: RobustRow) -> str:
    """The gates judging this row's eps."""
    return "<br>".join(_gate_line(g) for g in results.gates if results.row_at(g.eps) is row) or "–"


def to_markdown(results: AuditResults | dict[str, Any]) -> str:
    """The summary as Markdown text."""
    from robustness.core.schema import DataInfo, Environment, ModelInfo, Threat

    results = as_results(results)
    verdict = results.verdict
    model = results.model or ModelInfo()
    data = results.data or DataInfo()
    threat = results.threat or Threat()
    clean = results.clean
    q = "?"
    lines = [
        f"## {ICON.get(verdict, '')} Robustness audit: **{_text(verdict.upper())}**",
        "",
        _text(results.verdict_reason or "", line_start=True),
        "",
        f"Model {_code(model.spec or q)} (sha256 {_code((model.sha256 or '')[:12])}) on "
        f"{_code(data.spec or q)}, n = {_text(_first(data.n, clean.n))}, "
        f"norm {_text(threat.norm or q)}. Intervals are exact 95% Clopper–Pearson.",
        "",
        "| eps | robust accuracy | 95% CI | robust / n | gates |",
        "|---:|---:|:---:|---:|:---|",
    ]
    clean_gates = [g for g in results.gates if g.kind == "min_clean_accuracy"]
    cg = "<br>".join(_gate_line(g) for g in clean_gates) or "–"
    lines.append(
        f"| 0 (clean) | {formatting.pct(clean.accuracy)} | {formatting.ci(clean.ci)} | "
        f"{_text(_first(clean.correct))}/{_text(_first(clean.n))} | {cg} |"
    )
    for r in results.robust:
        lines.append(
            f"| {formatting.eps_str(r.eps)} | {formatting.pct(r.accuracy)} | {formatting.ci(r.ci)} | "
            f"{_text(_first(r.n_robust))}/{_text(_first(r.n))} | {_gates_at(results, r)} |"
        )
    other = [g for g in results.gates if g.kind != "min_clean_accuracy" and results.row_at(g.eps) is None]
    if other:
        lines += ["", "| other gate | value | threshold | result |", "|:---|---:|---:|:---:|"]
        for g in other:
            lines.append(
                f"| {_text(g.name)} | {_text(formatting.num(g.value))} | {_text(formatting.num(g.threshold))} | "
                f"{'✅ pass' if g.passed else '❌ fail'} |"
            )
    checks = results.sanity_checks
    failed = results.failed_checks()
    waived = [c for c in checks if c.status == "waived"]
    skipped = [c for c in checks if c.status == "skip"]
    n_pass = sum(1 for c in checks if c.status == "pass")
    lines += [
        "",
        f"**Sanity checks:** {n_pass} passed, {len(failed)} failed, {len(skipped)} skipped, {len(waived)} waived.",
    ]
    if failed:
        lines += ["", "Failed sanity checks (the robust accuracy may be too high and cannot be trusted):", ""]
        lines += [
            f"- ❌ **{_text(c.title or c.name)}** ({_code(c.name)}): {_text(c.detail or '')}" for c in failed
        ]
    if waived:
        lines += ["", "Waived checks:", ""]
        lines += [f"- {_code(c.name)}: waived, reason: {_text(c.waiver or 'none given')}" for c in waived]
    if skipped:
        lines += ["", "Skipped checks:", ""]
        lines += [f"- {_code(c.name)}: {_text(c.detail or '')}" for c in skipped]
    lines += _indicator_lines(results)
    for result in results.sections.values():
        view = result.view()
        lines += ["", f"**{_text(view.label)}:** {_text(view.summary)}"]
    t = results.timing.total_s if results.timing else None
    env = results.environment or Environment()
    # Where and how the model ran: a bf16 audit judges success at bf16 (see the README).
    ran_on = ", ".join(_text(v) for v in (env.device, env.precision) if v)
    lines += [
        "",
        f"<sub>robustness-audit {_text(results.tool_version or '')}, {_text(results.created or '')}"
        + (f", {ran_on}" if ran_on else "")
        + (f", {formatting.seconds(t)}" if t is not None else "")
        + "</sub>",
        "",
    ]
    return "\n".join(lines)


def _indicator_lines(results: AuditResults) -> list[str]:
    """The indicators of attack failure that fired, or one line saying none did (nothing when the
    attacks recorded none)."""
    attacks = [a for a in results.attacks or [] if a.indicators]
    if not attacks:
        return []
    fired = [(a, i) for a in attacks for i in a.indicators or [] if i.fired]
    if not fired:
        return ["", f"**Indicators of attack failure:** none fired ({len(attacks)} attack(s) measured)."]
    lines = [
        "",
        "Indicators of attack failure that fired (check attack\\_failure says whether a later attack "
        "made up for them):",
        "",
    ]
    for a, i in fired:
        who = _code(a.name) + (f" ({_code(i.member)})" if i.member else "")
        lines.append(f"- ⚠️ {who}: {_text(i.title or i.name)} on {i.n_fired}/{i.n_measured} samples")
    return lines


def _first(*values: Any) -> Any:
    """The first value that is not None, else '?'."""
    return next((v for v in values if v is not None), "?")


@renderer("md", "summary.md", aliases=("markdown",), suffixes=(".md", ".markdown"), order=30)
def render(results: AuditResults | dict[str, Any], path: str | Path, *, source: Path | None = None) -> Path:
    """Write summary.md atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_markdown(results))


def append_step_summary(results: AuditResults | dict[str, Any], summary_file: str | Path) -> None:
    """Append the summary to GitHub's ``$GITHUB_STEP_SUMMARY`` file (appending is how GitHub expects it)."""
    text = to_markdown(results)
    with open(summary_file, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")
