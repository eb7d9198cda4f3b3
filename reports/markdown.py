"""summary.md: the audit at a glance, for pull requests and GitHub's job summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reports import results as R

ICON = {"pass": "✅", "fail": "❌", "unreliable": "⚠️"}


def _cell(text: Any) -> str:
    """Markdown table cells cannot hold pipes or newlines."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
            f"{mark} {base.replace('_', ' ')} {cmp} {R.num(g.get('threshold'))} (value {R.num(g.get('value'))})"
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
        f"## {ICON.get(verdict, '')} Robustness audit: **{verdict.upper()}**",
        "",
        f"{results.get('verdict_reason', '')}",
        "",
        f"Model `{model.get('spec', '?')}` (sha256 `{str(model.get('sha256', ''))[:12]}`) on "
        f"`{data.get('spec', '?')}`, n = {data.get('n', clean.get('n', '?'))}, "
        f"norm {threat.get('norm', '?')}. Intervals are exact 95% Clopper–Pearson.",
        "",
        "| eps | robust accuracy | 95% CI | robust / n | gates |",
        "|---:|---:|:---:|---:|:---|",
    ]
    clean_gates = [g for g in results.get("gates") or [] if g.get("name") == "min_clean_accuracy"]
    cg = (
        "<br>".join(
            f"{'✅' if g.get('passed') else '❌'} min clean accuracy ≥ {R.num(g.get('threshold'))} "
            f"(value {R.num(g.get('value'))})"
            for g in clean_gates
        )
        or "–"
    )
    lines.append(
        f"| 0 (clean) | {R.pct(clean.get('accuracy'))} | {R.ci(clean.get('ci'))} | "
        f"{clean.get('correct', '?')}/{clean.get('n', '?')} | {cg} |"
    )
    for r in results["robust"]:
        lines.append(
            f"| {R.eps_str(r['eps'])} | {R.pct(r.get('accuracy'))} | {R.ci(r.get('ci'))} | "
            f"{r.get('n_robust', '?')}/{r.get('n', '?')} | {_gates_at(results, r['eps'])} |"
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
                f"| {_cell(g.get('name'))} | {R.num(g.get('value'))} | {R.num(g.get('threshold'))} | "
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
            f"- ❌ **{_cell(c.get('title') or c['name'])}** (`{c['name']}`): {_cell(c.get('detail', ''))}"
            for c in failed
        ]
    if waived:
        lines += ["", "Waived checks:", ""]
        lines += [
            f"- `{c['name']}`: waived, reason: {_cell(c.get('waiver') or 'none given')}" for c in waived
        ]
    if skipped:
        lines += ["", "Skipped checks:", ""]
        lines += [f"- `{c['name']}`: {_cell(c.get('detail', ''))}" for c in skipped]
    wm = results.get("watermark")
    if wm:
        lines += [
            "",
            f"**Watermark:** {wm.get('k', '?')}/{wm.get('K', '?')} trigger matches, p-value {R.num(wm.get('p_value'))}, "
            f"{'verified' if wm.get('verified') else 'NOT verified'}.",
        ]
    t = (results.get("timing") or {}).get("total_s")
    env = results.get("environment") or {}
    # Where and how the model ran: a bf16 audit judges success at bf16 (see the README).
    ran_on = ", ".join(str(env[k]) for k in ("device", "precision") if env.get(k))
    lines += [
        "",
        f"<sub>robustness-audit {results.get('tool_version', '')}, {results.get('created', '')}"
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
    from robustness.io import atomic_write_text

    return atomic_write_text(path, to_markdown(results))


def append_step_summary(results: dict[str, Any], summary_file: str | Path) -> None:
    """Append the summary to GitHub's ``$GITHUB_STEP_SUMMARY`` file (appending is how GitHub expects it)."""
    text = to_markdown(results)
    with open(summary_file, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")
