"""``robustness corruptions``: a model's accuracy under the 15 common corruptions at 5 severities."""

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
    p = sub.add_parser(
        "corruptions",
        help="accuracy under the 15 common corruptions at 5 severities, mean corruption accuracy, drop",
        description="Measure the model's accuracy on --data under each common corruption (Hendrycks & "
        "Dietterich 2019: CIFAR-10-C constants up to 32x32, ImageNet-C above) at each severity, the mean "
        "corruption accuracy over all of them and its drop relative to clean accuracy.",
    )
    add_model_options(p)
    add_data_options(p)
    p.add_argument(
        "--corruption",
        action="append",
        metavar="NAME",
        help="run only this corruption (repeatable; default: all 15)",
    )
    p.add_argument(
        "--severity",
        action="append",
        type=int,
        choices=(1, 2, 3, 4, 5),
        help="run only this severity (repeatable; default: 1 to 5)",
    )
    p.add_argument("--batch-size", type=int, default=512, help="prediction batch size (default 512)")
    p.add_argument("--json", action="store_true", help="print one JSON object (without the example images)")
    p.set_defaults(handler=cmd_corruptions)


def cmd_corruptions(args: argparse.Namespace) -> int:
    from robustness.core.corruptions.accuracy import corruption_accuracy
    from robustness.core.sections.corruptions import CONSTANTS

    model = load_model_from_args(args)
    data = load_data_from_args(args, model)
    severities = sorted(set(args.severity)) if args.severity else [1, 2, 3, 4, 5]
    res = corruption_accuracy(
        model,
        data.x,
        data.y,
        names=args.corruption,
        severities=severities,
        seed=args.seed,
        batch_size=args.batch_size,
        example_severity=None,
    )
    res = {"model": model.spec, "data": data.spec, **res}
    res.pop("examples", None)
    if args.json:
        print_json(res)
        return 0
    lo, hi = res["mean_corruption_ci"]
    print(
        f"model {res['model']} on {res['data']} (n={res['n']}, "
        f"{CONSTANTS.get(res['constants'], res['constants'])} constants, seed {res['seed']})"
    )
    head = "".join(f"{'sev ' + str(s):>8}" for s in res["severities"])
    print(f"{'corruption':<20}{head}{'mean':>8}")
    for row in res["corruptions"]:
        cells = "".join(f"{a:8.3f}" for a in row["accuracy"])
        print(f"{row['name']:<20}{cells}{row['mean_accuracy']:8.3f}")
    print(f"clean accuracy            {res['clean_accuracy']:.4f}")
    print(f"mean corruption accuracy  {res['mean_corruption_accuracy']:.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    drop = res["relative_drop"]
    print(f"relative drop from clean  {'n/a' if drop is None else f'{drop:.4f}'}")
    if any(row["name"] == "frost" for row in res["corruptions"]):
        print("frost uses procedurally generated ice textures: not comparable with published frost numbers")
    return 0
