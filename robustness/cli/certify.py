"""``robustness certify``: randomized smoothing's CERTIFY (Cohen et al. 2019) on a model and data."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from robustness.cli.common import (
    add_data_options,
    add_model_options,
    load_data_from_args,
    load_model_from_args,
    print_json,
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text[:30]!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text[:30]!r}")
    return value


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number within (0, 1), got {text[:30]!r}")
    return value


def _radius(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text[:30]!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "certify",
        help="certified l2 accuracy of the Gaussian-smoothed model (randomized smoothing)",
        description="Certify each sample with the smoothed classifier of the model (Cohen, Rosenfeld & Kolter "
        "2019): n0 noisy draws pick the class, n more bound its probability from below (one-sided "
        "Clopper-Pearson at alpha); below 1/2 it abstains, else the certified l2 radius is "
        "sigma * Phi^-1(p_lower). Certify a model trained with the same noise (robustness harden "
        "--method gaussian --sigma S).",
    )
    add_model_options(p)
    add_data_options(p)
    g = p.add_argument_group("smoothing")
    g.add_argument("--sigma", required=True, type=_positive_float, help="noise level, in input units")
    g.add_argument("--n0", type=_count, default=100, help="draws that pick the class (default 100)")
    g.add_argument(
        "--n", type=_count, default=100_000, help="draws that bound its probability (default 100000)"
    )
    g.add_argument("--alpha", type=_level, default=0.001, help="failure probability (default 0.001)")
    g.add_argument(
        "--radii",
        nargs="+",
        type=_radius,
        metavar="R",
        help="l2 radii to report certified accuracy at (default: round steps up to the largest certifiable)",
    )
    g.add_argument(
        "--batch-size",
        type=_count,
        metavar="N",
        help="forward passes per round (default 10000 on a GPU, 256 on a CPU)",
    )
    g.add_argument(
        "--per-sample",
        metavar="FILE",
        help="write one JSON line per sample: index, label, prediction (-1: abstain), radius (null: "
        "abstain), correct, p_lower",
    )
    g.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_certify)


def certify(model: Any, data: Any, args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary and the per-sample records of CERTIFY on ``data``."""
    from robustness.smoothing import bracket
    from robustness.smoothing.classifier import SmoothedClassifier

    smoothed = SmoothedClassifier(model, args.sigma, batch_size=args.batch_size, seed=args.seed)
    t0 = time.perf_counter()
    certs = smoothed.certify(data.x, args.n0, args.n, args.alpha)
    elapsed = time.perf_counter() - t0
    radii = sorted(set(args.radii)) if args.radii else bracket.default_radii(certs)
    samples = len(data)
    summary = {
        "model": model.spec,
        "data": data.spec,
        "n_samples": samples,
        "sigma": args.sigma,
        "n0": args.n0,
        "n": args.n,
        "alpha": args.alpha,
        "seed": args.seed,
        "device": str(model.device),
        "batch_size": smoothed.batch_size,
        "max_radius": certs.max_radius,
        "smoothed_accuracy": int(certs.correct(data.y).sum()) / samples if samples else 0.0,
        "abstain_rate": int(certs.abstained.sum()) / samples if samples else 0.0,
        "certified_accuracy": bracket.certified_curve(certs, data.y, radii),
        "time_s": elapsed,
        "samples_per_s": samples / elapsed if elapsed > 0 else None,
    }
    rows = bracket.per_sample(certs, data.y)
    for row, ident in zip(rows, data.ids):
        row["id"] = ident  # the sample's stable id in the data (index is its position)
    return summary, rows


def cmd_certify(args: argparse.Namespace) -> int:
    from robustness.core.io import atomic_write_text

    model = load_model_from_args(args)
    data = load_data_from_args(args, model)
    summary, rows = certify(model, data, args)
    if args.per_sample:
        atomic_write_text(args.per_sample, "".join(json.dumps(r) + "\n" for r in rows))
        summary["per_sample"] = str(args.per_sample)
    if args.json:
        print_json(summary)
        return 0
    print(
        f"smoothed {summary['model']} (sigma {args.sigma:g}) on {summary['data']} (n={summary['n_samples']}): "
        f"n0={args.n0}, n={args.n}, alpha={args.alpha:g}, {summary['time_s']:.1f} s"
    )
    print(
        f"correct at radius 0: {summary['smoothed_accuracy']:.4f}   abstained: {summary['abstain_rate']:.4f}   "
        f"largest certifiable radius: {summary['max_radius']:.3f}"
    )
    print("radius  certified accuracy")
    for point in summary["certified_accuracy"]:
        print(f"{point['radius']:6.3f}  {point['certified_accuracy']:.4f}")
    return 0
