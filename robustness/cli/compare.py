"""``robustness compare``: did robustness regress between two audits?"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="per-eps accuracy deltas between two audits, with a paired McNemar test",
        description="Compare two audits sample by sample (paired on shared sample ids, from the samples.jsonl "
        "next to each results.json). Exit 0: no significant regression; 1: a significant drop larger than "
        "--max-drop; 2: bad input (missing files, different threat model or eps grid, impossible numbers, "
        "or different attack budgets with --strict-budget). Different attack budgets (e.g. a quick audit "
        "against a standard one) are otherwise a warning.",
    )
    p.add_argument("base", metavar="BASE", help="BASE/results.json (or the folder holding it)")
    p.add_argument("new", metavar="NEW", help="NEW/results.json (or the folder holding it)")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.0,
        metavar="D",
        help="tolerated drop of accuracy as a fraction (0.02 = two points; default 0)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the test (default 0.05)")
    p.add_argument(
        "--strict-budget",
        action="store_true",
        help="refuse (exit 2) when the audits ran different attacks or attack parameters, instead of warning",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    import sys

    from robustness.cli.common import print_json
    from robustness.compare import budget_warning, compare

    result = compare(
        args.base, args.new, max_drop=args.max_drop, alpha=args.alpha, strict_budget=args.strict_budget
    )
    if args.json:
        # The text output carries the warning itself; JSON readers get it in budget_differences.
        if result.budget_differences:
            print(
                f"robustness compare: warning: {budget_warning(result.budget_differences)}", file=sys.stderr
            )
        print_json(result.to_dict())
    else:
        print(result.format())
    return result.exit_code
