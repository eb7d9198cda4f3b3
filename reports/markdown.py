"""summary.md: the audit at a glance, for pull requests and GitHub's job summary.

Every string taken from the results (model and data specs, gate and check names, details,
waiver reasons, versions) is shown literally: a model spec such as ``<img src=x onerror=...>``
or ``**bold** | pipe`` must neither become markup on GitHub nor break a table. Plain text goes
through :func:`_text` (Markdown and HTML escaped, one line), identifiers through :func:`_code`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from reports import results as R

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


def _gates_at(results: dict[str, Any], eps: float) -> str:
    out = []
    for g in results.get("gates") or []:
        base, _, at = str(g.get("name", "")).partition("@")
        try:
            if not at or abs(float(at) - float(eps)) > 1e-12:
                continue
        except ValueError:
            continue
        mark = "✅" if g.get("passed") else "❌"
        cmp = R.gate_comparator(base)
        out.append(
            f"{mark} {_text(base.replace('_', ' '))} {cmp} {_text(R.num(g.get('threshold')))} "
            f"(value {_text(R.num(g.get('value')))})"
        )
    return "<br>".join(out) or "–"


def to_markdown(results: dict[str, Any]) -> str:
    """The summary as Markdown text."""
    R.check_schema(results)
    verdict = str(results.get("verdict", "?"))
    model = results.get("model") or {}
    data = results.get("data") or {}
    threat = results.get("threat") or {}
    clean = results["clean"]
    lines = [
        f"## {ICON.get(verdict, '')} Robustness audit: **{_text(verdict.upper())}**",
        "",
        _text(results.get("verdict_reason", ""), line_start=True),
        "",
        f"Model {_code(model.get('spec', '?'))} (sha256 {_code(str(model.get('sha256', ''))[:12])}) on "
        f"{_code(data.get('spec', '?'))}, n = {_text(data.get('n', clean.get('n', '?')))}, "
        f"norm {_text(threat.get('norm', '?'))}. Intervals are exact 95% Clopper–Pearson.",
        "",
        "| eps | robust accuracy | 95% CI | robust / n | gates |",
        "|---:|---:|:---:|---:|:---|",
    ]
    clean_gates = [g for g in results.get("gates") or [] if g.get("name") == "min_clean_accuracy"]
    cg = (
        "<br>".join(
            f"{'✅' if g.get('passed') else '❌'} min clean accuracy ≥ {_text(R.num(g.get('threshold')))} "
            f"(value {_text(R.num(g.get('value')))})"
            for g in clean_gates
        )
        or "–"
    )
    lines.append(
        f"| 0 (clean) | {R.pct(clean.get('accuracy'))} | {R.ci(clean.get('ci'))} | "
        f"{_text(clean.get('correct', '?'))}/{_text(clean.get('n', '?'))} | {cg} |"
    )
    for r in results["robust"]:
        lines.append(
            f"| {R.eps_str(r['eps'])} | {R.pct(r.get('accuracy'))} | {R.ci(r.get('ci'))} | "
            f"{_text(r.get('n_robust', '?'))}/{_text(r.get('n', '?'))} | {_gates_at(results, r['eps'])} |"
        )
    shown = {"min_clean_accuracy"} | {
        g["name"]
        for g in results.get("gates") or []
        if "@" in str(g.get("name")) and _is_eps_gate(g, results)
    }
    other = [g for g in results.get("gates") or [] if g.get("name") not in shown]
    if other:
        lines += ["", "| other gate | value | threshold | result |", "|:---|---:|---:|:---:|"]
        for g in other:
            lines.append(
                f"| {_text(g.get('name'))} | {_text(R.num(g.get('value')))} | {_text(R.num(g.get('threshold')))} | "
                f"{'✅ pass' if g.get('passed') else '❌ fail'} |"
            )
    checks = results.get("sanity_checks") or []
    failed = R.failed_checks(results)
    waived = [c for c in checks if c.get("status") == "waived"]
    skipped = [c for c in checks if c.get("status") == "skip"]
    n_pass = sum(1 for c in checks if c.get("status") == "pass")
    lines += [
        "",
        f"**Sanity checks:** {n_pass} passed, {len(failed)} failed, {len(skipped)} skipped, {len(waived)} waived.",
    ]
    if failed:
        lines += ["", "Failed sanity checks (the robust accuracy may be too high and cannot be trusted):", ""]
        lines += [
            f"- ❌ **{_text(c.get('title') or c['name'])}** ({_code(c['name'])}): {_text(c.get('detail', ''))}"
            for c in failed
        ]
    if waived:
        lines += ["", "Waived checks:", ""]
        lines += [
            f"- {_code(c['name'])}: waived, reason: {_text(c.get('waiver') or 'none given')}" for c in waived
        ]
    if skipped:
        lines += ["", "Skipped checks:", ""]
        lines += [f"- {_code(c['name'])}: {_text(c.get('detail', ''))}" for c in skipped]
    wm = results.get("watermark")
    if wm:
        lines += [
            "",
            f"**Watermark:** {_text(wm.get('k', '?'))}/{_text(wm.get('K', '?'))} trigger matches, "
            f"p-value {_text(R.num(wm.get('p_value')))}, "
            f"{'verified' if wm.get('verified') else 'NOT verified'}.",
        ]
    t = (results.get("timing") or {}).get("total_s")
    env = results.get("environment") or {}
    # Where and how the model ran: a bf16 audit judges success at bf16 (see the README).
    ran_on = ", ".join(_text(env[k]) for k in ("device", "precision") if env.get(k))
    lines += [
        "",
        f"<sub>robustness-audit {_text(results.get('tool_version', ''))}, {_text(results.get('created', ''))}"
        + (f", {ran_on}" if ran_on else "")
        + (f", {R.seconds(t)}" if t is not None else "")
        + "</sub>",
        "",
    ]
    return "\n".join(lines)


def _is_eps_gate(g: dict[str, Any], results: dict[str, Any]) -> bool:
    _, _, at = str(g.get("name", "")).partition("@")
    try:
        e = float(at)
    except ValueError:
        return False
    return any(abs(float(r["eps"]) - e) < 1e-12 for r in results["robust"])


def render(results: dict[str, Any], path: str | Path) -> Path:
    """Write summary.md atomically."""
    from robustness.core.io import atomic_write_text

    return atomic_write_text(path, to_markdown(results))


def append_step_summary(results: dict[str, Any], summary_file: str | Path) -> None:
    """Append the summary to GitHub's ``$GITHUB_STEP_SUMMARY`` file (appending is how GitHub expects it)."""
    text = to_markdown(results)
    with open(summary_file, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")
