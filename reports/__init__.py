"""Renderers: an audit's results dict -> PDF, JUnit XML and Markdown artefacts.

Every renderer reads the schema-versioned results (and the files named next to them) and
never recomputes; each writes atomically. :func:`render_all` runs the requested ones and
isolates their failures, so a broken renderer costs one artefact, never ``results.json``
(which it does not touch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# format -> (module, default file name). Aliases map to the same renderer.
RENDERERS = {
    "pdf": ("reports.pdf", "report.pdf"),
    "junit": ("reports.junit", "junit.xml"),
    "md": ("reports.markdown", "summary.md"),
}
ALIASES = {"markdown": "md", "xml": "junit"}
# Formats the audit runner writes itself; asking render_all for them is not an error.
NOT_RENDERED = {"json"}


def canonical_format(name: str) -> str:
    """'markdown' -> 'md'; raise UsageError for an unknown format."""
    from robustness.core.errors import UsageError

    f = ALIASES.get(name.lower(), name.lower())
    if f not in RENDERERS and f not in NOT_RENDERED:
        raise UsageError(
            f"unknown report format {name!r}",
            field="format",
            fix=f"Use one of: {', '.join([*RENDERERS, *NOT_RENDERED])}.",
        )
    return f


def render(results: dict[str, Any], fmt: str, path: str | Path, *, source: str | Path | None = None) -> Path:
    """Render one format to ``path``; ``source`` is the folder holding results.json's companion files."""
    import importlib

    fmt = canonical_format(fmt)
    module = importlib.import_module(RENDERERS[fmt][0])
    if fmt == "pdf":
        return module.render(results, path, source=source)
    return module.render(results, path)


def render_all(
    results: dict[str, Any],
    outdir: Path,
    formats: Iterable[str],
    *,
    source: str | Path | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, str]:
    """Render each requested format into ``outdir``; return {format: written path}.

    A renderer that raises is reported on stderr (and in ``errors`` when a dict is given,
    {format: message}) and left out of the return value; the others still run. ``json`` is
    accepted and skipped (the audit runner writes results.json). When ``$GITHUB_STEP_SUMMARY``
    is set, the Markdown summary is appended to it, whether or not ``md`` was requested.
    ``source`` defaults to ``outdir`` (where the runner put examples.npz).
    """
    outdir = Path(outdir)
    src = Path(source) if source is not None else outdir
    written: dict[str, str] = {}
    for name in dict.fromkeys(formats):  # keep order, drop duplicates
        try:
            fmt = canonical_format(name)
            if fmt in NOT_RENDERED or fmt in written:
                continue
            path = render(results, fmt, outdir / RENDERERS[fmt][1], source=src)
            written[fmt] = str(path)
        except Exception as exc:  # isolate renderers: one failing must not cost the others
            _report_failure(name, exc, errors)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            from reports.markdown import append_step_summary

            append_step_summary(results, summary_file)
        except Exception as exc:
            _report_failure("github-step-summary", exc, errors)
    return written


def _report_failure(name: str, exc: BaseException, errors: dict[str, str] | None) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    if errors is not None:
        errors[name] = msg
    print(f"robustness: the {name} report could not be written ({msg})", file=sys.stderr)
