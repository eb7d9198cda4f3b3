"""``robustness evaluate``: clean metrics with confidence intervals, the data read batch by batch."""

from __future__ import annotations

import argparse
from typing import Any

from robustness.cli.common import (
    add_data_options,
    add_model_options,
    batch_size_arg,
    check_batch_size,
    load_model_from_args,
    open_data_from_args,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="clean accuracy, precision/recall/F1 and confusion matrix")
    add_model_options(p)
    add_data_options(p)
    p.add_argument(
        "--batch-size",
        type=batch_size_arg,
        default=512,
        help="prediction batch size, or auto: the largest that fits on the GPU (default 512)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_evaluate)


def evaluate(model, data, batch_size: int = 512) -> dict[str, Any]:
    """Clean metrics of ``model`` on ``data`` (a ``Dataset`` or a ``DataStream``), predicted batch by
    batch: only the batch in flight and one label and prediction per sample are held."""
    import torch

    from robustness.core.data import Dataset
    from robustness.core.metrics import classification_metrics
    from robustness.core.stream import TensorStream

    stream = TensorStream(data) if isinstance(data, Dataset) else data
    labels, preds = [], []
    pin = model.device.type == "cuda"
    for batch in stream.batches(batch_size, pin_memory=pin):
        model.validate(batch.x)
        preds.append(model.predict(batch.x.to(model.device, non_blocking=pin), batch_size).cpu())
        labels.append(batch.y)
    y, pred = torch.cat(labels), torch.cat(preds)
    out = classification_metrics(y.numpy(), pred.numpy(), int(model.num_classes))
    res = {"model": model.spec, "data": stream.spec, **out}
    if stream.class_names:
        res["class_names"] = stream.class_names
    return res


def cmd_evaluate(args: argparse.Namespace) -> int:
    check_batch_size(args.batch_size)
    model = load_model_from_args(args)
    stream = open_data_from_args(args, model, backward=False)
    res = evaluate(model, stream, args.batch_size)
    res["batch_size"] = args.batch_size
    if args.batch_size_search is not None:
        res["batch_size_search"] = args.batch_size_search
    if args.json:
        print_json(res)
        return 0
    lo, hi = res["accuracy_ci"]
    print(f"model {res['model']} on {res['data']} (n={res['n']})")
    print(f"accuracy  {res['accuracy']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    print(f"precision {res['precision']:.4f}  recall {res['recall']:.4f}  f1 {res['f1']:.4f}  (macro)")
    return 0
