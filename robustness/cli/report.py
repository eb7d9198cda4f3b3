"""``robustness report``: re-render an audit's artefacts from its results.json alone.

The formats are the registered renderers (``reports.RENDERERS``): a new renderer file adds its
format to ``--format`` and its file suffixes to the guess from ``-o``.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from reports import renderers

    found = renderers()
    names = [r.name for r in found]
    p = sub.add_parser(
        "report",
        help=f"render {_either([r.filename for r in found])} from a results.json",
        description="Render a report from an audit's results.json (and the examples.npz next to it). "
        "Nothing is recomputed; results.json is only read. A results.json written by an earlier "
        "version is read too (it is migrated in memory, never rewritten).",
    )
    p.add_argument("results", metavar="RESULTS", help="results.json, or the audit's output folder")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file to write (default: the format's usual name next to RESULTS)",
    )
    p.add_argument(
        "--format",
        choices=names,
        help=f"{_either(names)} (default: from the output file's suffix, else {names[0] if names else 'none'})",
    )
    p.set_defaults(handler=cmd_report)


def _either(words: list[str]) -> str:
    """'a, b or c'."""
    return " or ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reports import RENDERERS, format_for_suffix, render, renderers
    from robustness.core.errors import UsageError
    from robustness.core.schema import load_results

    src = Path(args.results)
    folder = src if src.is_dir() else src.parent
    results = load_results(src)
    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lower() if args.output else ""
        fmt = format_for_suffix(suffix) or renderers()[0].name
    out = Path(args.output) if args.output else folder / RENDERERS.get(fmt).filename
    if out.resolve() == (folder / "results.json").resolve():
        raise UsageError(
            "the output would overwrite results.json",
            field="--output",
            fix="Write the report to another file.",
        )
    try:
        path = render(results, fmt, out, source=folder)
    except UsageError:
        raise
    except Exception as exc:  # a renderer bug is an internal error (exit 2), shown in one line
        print(
            f"robustness report: error: the {fmt} renderer failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {path}")
    return 0
