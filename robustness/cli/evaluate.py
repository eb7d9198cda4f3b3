"""``robustness evaluate``: clean metrics with confidence intervals."""

from __future__ import annotations

import argparse

from robustness.cli.common import (
    add_data_options,
    add_model_options,
    load_data_from_args,
    load_model_from_args,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="clean accuracy, precision/recall/F1 and confusion matrix")
    add_model_options(p)
    add_data_options(p)
    p.add_argument("--batch-size", type=int, default=512, help="prediction batch size (default 512)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_evaluate)


def evaluate(model, data, batch_size: int = 512) -> dict:
    from robustness.core.metrics import classification_metrics

    model.validate(data.x)
    pred = model.predict(data.x, batch_size).cpu()
    out = classification_metrics(data.y.numpy(), pred.numpy(), int(model.num_classes))
    return {"model": model.spec, "data": data.spec, **out}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from robustness.core.errors import UsageError

    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be > 0, got {args.batch_size}", fix="Use e.g. 256.")
    model = load_model_from_args(args)
    data = load_data_from_args(args, model)
    res = evaluate(model, data, args.batch_size)
    if args.json:
        print_json(res)
        return 0
    lo, hi = res["accuracy_ci"]
    print(f"model {res['model']} on {res['data']} (n={res['n']})")
    print(f"accuracy  {res['accuracy']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    print(f"precision {res['precision']:.4f}  recall {res['recall']:.4f}  f1 {res['f1']:.4f}  (macro)")
    return 0
