"""Renderers: an audit's typed results -> PDF, JUnit XML, Markdown and any other format.

A renderer is one file in this folder that registers its format with :func:`renderer`::

    @renderer("md", "summary.md", aliases=("markdown",), suffixes=(".md", ".markdown"))
    def write(results: AuditResults, path: Path, *, source: Path | None = None) -> Path: ...

:data:`RENDERERS` finds them by walking the folder; the config's ``output.formats``, the CLI's
``--format`` choices and :func:`render_all` all come from it, so a new format is one new file.
Every renderer reads the typed result (:class:`robustness.core.schema.AuditResults`) and the
files named next to it, never recomputes and never parses a name, and writes atomically.
:func:`render_all` runs the requested ones and isolates their failures, so a broken renderer
costs one artefact, never ``results.json`` (which it does not touch).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustness.core.errors import UsageError
from robustness.core.registry import Registry

if TYPE_CHECKING:
    from robustness.core.schema import AuditResults

# Formats the audit runner writes itself (results.json); asking render_all for them is not an error.
NOT_RENDERED = ("json",)


@dataclass(frozen=True)
class Renderer:
    """One output format: its name, default file name, and the function that writes it."""

    name: str
    filename: str
    write: Callable[..., Path]  # (results, path, *, source) -> the path written
    aliases: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()  # file suffixes that mean this format ('robustness report -o x.pdf')
    order: int = 100  # position among the formats (config default, CLI choices, render order)
    default: bool = True  # written when the config names no formats (an export on request is not)


RENDERERS: Registry[Renderer] = Registry("report format", package="reports", error=UsageError, field="format")


def renderer(
    name: str,
    filename: str,
    *,
    aliases: Iterable[str] = (),
    suffixes: Iterable[str] = (),
    order: int = 100,
    default: bool = True,
) -> Callable[[Callable[..., Path]], Callable[..., Path]]:
    """Decorator a renderer file puts on its write function to register the format ``name``;
    ``default=False`` for a format written only when asked for."""

    def register(write: Callable[..., Path]) -> Callable[..., Path]:
        RENDERERS.add(name, Renderer(name, filename, write, tuple(aliases), tuple(suffixes), order, default))
        return write

    return register


def renderers() -> list[Renderer]:
    """The registered renderers in format order."""
    return sorted(RENDERERS.items().values(), key=lambda r: (r.order, r.name))


def output_formats() -> list[str]:
    """Every output format: ``json`` (results.json, always written) and each renderer's."""
    return [*NOT_RENDERED, *(r.name for r in renderers())]


def default_formats() -> list[str]:
    """The formats an audit writes when its config names none: ``json`` and every default renderer's."""
    return [*NOT_RENDERED, *(r.name for r in renderers() if r.default)]


def canonical_format(name: str) -> str:
    """'markdown' -> 'md'; the registry's UsageError for an unknown format."""
    f = str(name).lower()
    if f in NOT_RENDERED or f in RENDERERS:
        return f
    for r in renderers():
        if f in r.aliases:
            return r.name
    raise RENDERERS.unknown(name)


def format_for_suffix(suffix: str) -> str | None:
    """The format a file suffix means ('.pdf' -> 'pdf'), or None."""
    return next((r.name for r in renderers() if suffix.lower() in r.suffixes), None)


def as_results(results: AuditResults | dict[str, Any]) -> AuditResults:
    """The typed result of what a renderer was handed (a results dict is migrated and typed)."""
    from robustness.core.schema import parse_results

    return parse_results(results, "results", check_numbers=False)


def render(
    results: AuditResults | dict[str, Any], fmt: str, path: str | Path, *, source: str | Path | None = None
) -> Path:
    """Render one format to ``path``; ``source`` is the folder holding results.json's companion files."""
    r = RENDERERS.get(canonical_format(fmt))
    return r.write(as_results(results), Path(path), source=Path(source) if source is not None else None)


def render_all(
    results: AuditResults | dict[str, Any],
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
    typed: AuditResults | None = None
    for name in dict.fromkeys(formats):  # keep order, drop duplicates
        try:
            fmt = canonical_format(name)
            if fmt in NOT_RENDERED or fmt in written:
                continue
            typed = typed if typed is not None else as_results(results)
            path = render(typed, fmt, outdir / RENDERERS.get(fmt).filename, source=src)
            written[fmt] = str(path)
        except Exception as exc:  # isolate renderers: one failing must not cost the others
            _report_failure(name, exc, errors)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            from reports.markdown import append_step_summary

            append_step_summary(typed if typed is not None else as_results(results), summary_file)
        except Exception as exc:
            _report_failure("github-step-summary", exc, errors)
    return written


def _report_failure(name: str, exc: BaseException, errors: dict[str, str] | None) -> None:
    msg = f"{type(exc).__name__}: {exc}"
    if errors is not None:
        errors[name] = msg
    print(f"robustness: the {name} report could not be written ({msg})", file=sys.stderr)
