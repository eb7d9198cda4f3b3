"""``robustness results``: many audits side by side, as a table, CSV, Markdown or a trend page."""

from __future__ import annotations

import argparse
import re


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="tabulate many audits side by side (model, data, date, clean, robust per eps, verdict)",
        description="Read the results.json of many audits (files or output folders; an older schema is "
        "migrated, impossible numbers refused) and print one row per run, in the order the audits were "
        "created: model, data, n, commit (where recorded), date, clean accuracy, robust accuracy at every "
        "eps of any run, verdict. --csv writes the numbers (fractions), --html a trend page of robustness "
        "across the runs (self-contained, no network request). From Python: robustness.load_results(PATH) "
        "and its .robust, .samples and .attacks DataFrames.",
    )
    p.add_argument("results", metavar="RESULTS", nargs="+", help="results.json files or audit output folders")
    p.add_argument("--csv", metavar="FILE", help="write the table as CSV (accuracies as fractions)")
    p.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown instead of plain text"
    )
    p.add_argument("--html", metavar="FILE", help="write the trend page (robustness across the runs) to FILE")
    p.set_defaults(handler=cmd_results)


def cmd_results(args: argparse.Namespace) -> int:
    from robustness.core.io import atomic_write_text
    from robustness.tables import formatted, in_run_order, load_results, run_names, runs_table, trend_view

    runs = in_run_order([load_results(path) for path in args.results])
    table = runs_table(runs)
    shown = formatted(table)
    print(markdown_table(shown) if args.markdown else shown.to_string(index=False))
    if args.csv:
        path = atomic_write_text(args.csv, table.to_csv(index=False))
        print(f"wrote {path}")
    if args.html:
        from reports.trend import write_trend

        path = write_trend(trend_view(runs), args.html, run_names(runs))
        print(f"wrote {path}")
    return 0


# Characters that would start Markdown or HTML markup inside a cell (a model spec is the user's
# text); escaped with a backslash or as an entity, so GitHub shows them as typed.
_MARKUP = re.compile(r"([\\`*\[\]|~])")
# An underscore between two word characters never starts emphasis (min_robust_accuracy, html_work).
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    text = _MARKUP.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))
    return _UNDERSCORE.sub(r"\\_", text)


def markdown_table(df) -> str:
    """A DataFrame of strings as a GitHub Markdown table (numbers right-aligned)."""
    header = [str(c) for c in df.columns]
    right = {c for c in header if c in ("n", "clean") or c.startswith("robust@")}
    lines = [
        "| " + " | ".join(_cell(c) for c in header) + " |",
        "|" + "|".join("---:" if c in right else ":---" for c in header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
