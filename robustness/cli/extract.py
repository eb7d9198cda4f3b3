"""``robustness extract``: how cheaply a thief with query access copies the model."""

from __future__ import annotations

import argparse
import sys

from robustness.cli.common import add_model_options, load_model_from_args, print_json, seed_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="model extraction: agreement of a thief's copy with the model, per query budget",
        description="A thief draws N inputs from --data, queries the model (labels, or probabilities with "
        "--outputs probabilities) and trains a fresh copy of the model's architecture on the answers; the "
        "copy's agreement with the model and its accuracy are measured on --eval-data (default: 20%% of "
        "--data held out of the pool). With --watermark-key every copy is tested for the mark. Exit 0; 2 on "
        "bad input.",
    )
    add_model_options(p)
    p.add_argument(
        "--data", required=True, metavar="SPEC", help="the thief's query pool (its labels are not used)"
    )
    p.add_argument("--eval-data", metavar="SPEC", help="where the copies are measured")
    p.add_argument(
        "--queries", nargs="+", type=int, required=True, metavar="N", help="query budgets, e.g. 200 1000"
    )
    p.add_argument(
        "--outputs", choices=("labels", "probabilities"), default="labels", help="what the model returns"
    )
    p.add_argument(
        "--epochs", type=int, default=30, metavar="N", help="the copy's training epochs (default 30)"
    )
    p.add_argument(
        "--thief-architecture",
        metavar="SPEC",
        help="zoo:NAME or package.module:callable (default: a fresh copy of the model's architecture)",
    )
    p.add_argument("--watermark-key", metavar="KEY", help="test every stolen copy for this watermark")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="S", help="seed of the queries and the copy")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per budget")
    p.set_defaults(handler=cmd_extract)


def cmd_extract(args: argparse.Namespace) -> int:
    from robustness.core.errors import UsageError
    from robustness.core.formatting import ci, pct
    from robustness.privacy.audit import extraction_audit

    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}", field="--epochs", fix="Use e.g. 30.")
    model = load_model_from_args(args)
    res = extraction_audit(
        model,
        args.data,
        args.queries,
        eval_data=args.eval_data,
        outputs=args.outputs,
        epochs=args.epochs,
        architecture=args.thief_architecture,
        watermark_key=args.watermark_key,
        seed=args.seed,
        field_prefix="--",
        progress=None if args.json else (lambda text: print(text, file=sys.stderr, flush=True)),
    )
    if args.json:
        print_json([{**row, "outputs": res["outputs"]} for row in res["curve"]])
        return 0
    print(f"model {model.spec}: thief sees {res['outputs']}, pool {res['data']} ({res['pool_size']} inputs)")
    print(f"measured on {res['eval']} (n={res['eval_n']}); model accuracy there {pct(res['model_accuracy'])}")
    for row in res["curve"]:
        mark = ""
        if row.get("watermark") is not None:
            w = row["watermark"]
            mark = f"  watermark {'verified' if w['verified'] else 'not verified'} ({w['k']}/{w['K']})"
        print(
            f"{row['queries']:>7} queries: agreement {pct(row['agreement'])} {ci(row['agreement_ci'])}, "
            f"accuracy {pct(row['accuracy'])}{mark}"
        )
    return 0
