"""``robustness corrupt``: write a data set under one common corruption at one severity (.npz)."""

from __future__ import annotations

import argparse

from robustness.cli.common import add_data_options, data_options_from, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "corrupt",
        help="write data under one of the 15 common corruptions (CIFAR-10-C / ImageNet-C) as .npz",
        description="Corrupt every sample of --data with --corruption at --severity and write x, y and ids to "
        "--output (.npz, readable as --data by every command). Seeded: the same seed gives the same file on "
        "the same device.",
    )
    add_data_options(p)
    p.add_argument(
        "--corruption", required=True, metavar="NAME", help="e.g. gaussian_noise, frost, jpeg_compression"
    )
    p.add_argument("--severity", required=True, type=int, choices=(1, 2, 3, 4, 5), help="1 (mildest) to 5")
    p.add_argument("--output", required=True, metavar="FILE.npz", help="the .npz file to write")
    p.add_argument(
        "--bounds", nargs=2, type=float, metavar=("LOW", "HIGH"), help="value range of the data (default 0 1)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--json", action="store_true", help="print one JSON object describing the file")
    p.set_defaults(handler=cmd_corrupt)


def cmd_corrupt(args: argparse.Namespace) -> int:
    import io
    import time

    import numpy as np
    import torch

    from robustness.core.corruptions import constants_for, get_corruption
    from robustness.core.corruptions.base import CHUNK
    from robustness.core.data import load_data
    from robustness.core.errors import UsageError
    from robustness.core.io import atomic_write_bytes
    from robustness.core.model import resolve_device

    if not str(args.output).endswith(".npz"):
        raise UsageError(
            f"--output {args.output!r} is not a .npz file",
            field="--output",
            fix="Name a file ending in .npz.",
        )
    corruption = get_corruption(args.corruption)
    bounds = tuple(args.bounds) if args.bounds else (0.0, 1.0)
    data = load_data(
        args.data, n_examples=args.n_examples, seed=args.seed, bounds=bounds, **data_options_from(args)
    )
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    parts = []
    for start in range(0, len(data), CHUNK):
        part = data.x[start : start + CHUNK].to(device)
        parts.append(corruption(part, args.severity, seed=args.seed, bounds=bounds, start=start).cpu())
    x = torch.cat(parts).numpy().astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=data.y.numpy().astype(np.int64), ids=np.array(data.ids, dtype=str))
    atomic_write_bytes(args.output, buf.getvalue())
    constants, scale = constants_for(int(x.shape[-2]), int(x.shape[-1]))
    info = {
        "output": str(args.output),
        "data": data.spec,
        "n": len(data),
        "shape": list(x.shape[1:]),
        "corruption": corruption.name,
        "severity": args.severity,
        "constants": constants,
        "pixel_scale": scale,
        "seed": args.seed,
        "device": str(device),
        "time_s": time.perf_counter() - t0,
    }
    if args.json:
        print_json(info)
    else:
        print(
            f"wrote {info['n']} samples of {data.spec} under {corruption.name} severity {args.severity} "
            f"({constants} constants, seed {args.seed}) to {args.output}"
        )
    return 0
