"""``robustness report``: re-render an audit's artefacts from its results.json alone."""

from __future__ import annotations

import argparse
import sys

SUFFIX_FORMAT = {".pdf": "pdf", ".xml": "junit", ".md": "md", ".markdown": "md"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render report.pdf, junit.xml or summary.md from a results.json",
        description="Render a report from an audit's results.json (and the examples.npz next to it). "
        "Nothing is recomputed; results.json is only read.",
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
        choices=["pdf", "junit", "md"],
        help="pdf, junit or md (default: from the output file's suffix, else pdf)",
    )
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reports import RENDERERS, render
    from reports.results import load_results
    from robustness.core.errors import UsageError

    src = Path(args.results)
    folder = src if src.is_dir() else src.parent
    results = load_results(src)
    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lower() if args.output else ""
        fmt = SUFFIX_FORMAT.get(suffix, "pdf")
    out = Path(args.output) if args.output else folder / RENDERERS[fmt][1]
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
