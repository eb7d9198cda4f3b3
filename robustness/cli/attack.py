"""``robustness attack``: run one attack at one or more eps and report robust accuracy."""

from __future__ import annotations

import argparse
from typing import Any

from robustness.cli.common import (
    add_data_options,
    add_model_options,
    load_data_from_args,
    load_model_from_args,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attack",
        help="run one attack at one or more eps (robust accuracy with intervals)",
        description="Run one attack (see 'robustness attacks') on a model and data at one or more eps. "
        "Robust accuracy is observed by re-predicting every adversarial example.",
    )
    add_model_options(p)
    add_data_options(p)
    g = p.add_argument_group("attack")
    g.add_argument("--attack", required=True, metavar="NAME", help="attack name, or art:ClassName")
    g.add_argument("--eps", required=True, nargs="+", type=float, metavar="E", help="one or more radii (> 0)")
    g.add_argument("--norm", default="linf", help="linf, l2 or l1 (default linf)")
    g.add_argument("--steps", type=int, metavar="N", help="iterations (attacks with a 'steps' parameter)")
    g.add_argument(
        "--restarts", type=int, metavar="N", help="random restarts (attacks with a 'restarts' parameter)"
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an attack hyper-parameter; repeatable; VALUE is parsed as JSON when it can be (3, 0.5, true)",
    )
    g.add_argument(
        "--targeted", choices=("random", "least-likely"), help="targeted mode (attacks that support it)"
    )
    g.add_argument("--batch-size", type=int, default=512, help="samples per attack batch (default 512)")
    g.add_argument("--save", metavar="FILE.npz", help="save x_adv per eps, y, ids and predictions")
    g.add_argument("--json", action="store_true", help="print JSON (one object per eps; a list for several)")
    p.set_defaults(handler=cmd_attack)


def parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are JSON when they parse as JSON, else strings.

    Types are not checked here but where every attack is built (``attacks.base.check_param_types``),
    so ``--param steps=abc`` and ``steps: abc`` in a config get the same error.
    """
    from robustness.cli.common import parse_key_values

    return parse_key_values(items, flag="--param", example="steps=50")


def build_attack(name: str, params: dict[str, Any], *, steps: int | None, restarts: int | None):
    """The attack ``name`` with ``params``; ``steps``/``restarts`` only where the attack has them.

    An error about one parameter names the flag it came from (``--param steps``, ``--steps``).
    """
    from attacks.registry import available, get_attack
    from robustness.core.errors import AttackError, UsageError

    flags = {key: f"--param {key}" for key in params}
    params = dict(params)
    cls = available().get(name)
    for flag, key, value in (("--steps", "steps", steps), ("--restarts", "restarts", restarts)):
        if value is None:
            continue
        if key in params:
            raise UsageError(
                f"{key} given twice ({flag} and --param {key}=...)", field=flag, fix="Give it once."
            )
        if cls is not None and key not in cls.defaults():
            known = ", ".join(sorted(cls.defaults())) or "none"
            raise AttackError(
                f"attack {name!r} has no {key!r} parameter",
                field=flag,
                fix=f"Drop {flag}; the parameters of {name!r} are: {known} (set them with --param KEY=VALUE).",
            )
        params[key] = value
        flags[key] = flag
    try:
        return get_attack(name, **params)
    except AttackError as exc:
        if exc.field in flags:
            raise AttackError(exc.message, field=flags[exc.field], fix=exc.fix) from None
        raise


def result_rows(results: list, model, data, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        correct = r.clean_pred == r.y
        broken = correct & r.success
        s = r.summary()
        s.update(
            {
                "model": model.spec,
                "data": data.spec,
                "device": str(model.device),
                # Success is judged at this precision (bf16: autocast forward passes).
                "precision": model.precision,
                "channels_last": model.channels_last,
                "compiled": model.compiled,
                "seed": args.seed,
                "targeted": args.targeted,
                # Among samples classified correctly before the attack.
                "attack_success_rate": (int(broken.sum()) / int(correct.sum()))
                if bool(correct.any())
                else 0.0,
                "median_perturbation_norm": (
                    float(r.perturbation_norm[broken].median()) if bool(broken.any()) else None
                ),
            }
        )
        rows.append(s)
    return rows


def save_npz(path: str, results: list, data) -> None:
    """Write adversarial examples and predictions for every eps to ``path`` atomically."""
    import io

    import numpy as np
    import torch

    from robustness.core.io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        eps=np.array([r.eps for r in results], dtype=np.float64),
        x_adv=torch.stack([r.x_adv.detach().cpu() for r in results]).numpy(),
        adv_pred=torch.stack([r.adv_pred.cpu() for r in results]).numpy(),
        success=torch.stack([r.success.cpu() for r in results]).numpy(),
        clean_pred=results[0].clean_pred.cpu().numpy(),
        y=results[0].y.cpu().numpy(),
        ids=np.array(data.ids, dtype=str),
        norm=np.array(results[0].norm),
        attack=np.array(results[0].attack),
    )
    atomic_write_bytes(path, buf.getvalue())


def check_save_path(path: str) -> None:
    """``--save``: an .npz file that can be written, checked before anything runs."""
    import os
    from pathlib import Path

    from robustness.core.errors import UsageError

    p = Path(path)
    if not str(path).endswith(".npz"):
        raise UsageError(
            f"--save must name an .npz file, got {path!r}", field="--save", fix="Use e.g. adv.npz."
        )
    folder = p.parent
    try:
        if p.is_dir():
            raise UsageError(f"{p} is a folder", field="--save", fix="Name a file inside it, e.g. adv.npz.")
        if not folder.is_dir():
            raise UsageError(
                f"the folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder",
                field="--save",
                fix="Create the folder first, or save to an existing one.",
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(
                f"the folder {folder} is not writable", field="--save", fix="Save to a folder you can write."
            )
    except OSError as exc:
        raise UsageError(f"cannot save to {p}: {exc}", field="--save") from None


def cmd_attack(args: argparse.Namespace) -> int:
    from robustness.core.errors import UsageError
    from robustness.core.threat import check_eps, check_norm, refuse_duplicate_eps

    if args.batch_size <= 0:
        raise UsageError(
            f"--batch-size must be > 0, got {args.batch_size}", field="--batch-size", fix="Use e.g. 256."
        )
    if args.save:
        check_save_path(args.save)
    norm = check_norm(args.norm, field="--norm")
    refuse_duplicate_eps(args.eps, field="--eps")  # the rest of --eps needs the model's bounds
    params = parse_params(args.param)
    attack = build_attack(args.attack, params, steps=args.steps, restarts=args.restarts)
    # Cheap checks before loading anything heavy.
    if norm not in attack.norms:
        from robustness.core.errors import AttackError

        raise AttackError(
            f"attack {args.attack!r} does not support norm {norm!r}",
            field="--norm",
            fix=f"Use one of: {', '.join(attack.norms)}, or pick another attack.",
        )
    if args.targeted and not attack.supports_targeted:
        from robustness.core.errors import AttackError

        raise AttackError(
            f"attack {args.attack!r} has no targeted mode",
            field="--targeted",
            fix="Drop --targeted, or use an attack with targets (see 'robustness attacks').",
        )
    from robustness.core.distributed import init_from_env

    # Under torchrun: join the ranks (the batches are shared out; rank 0 saves and prints).
    dist = init_from_env(args.device)
    model = load_model_from_args(args)
    check_eps(args.eps, bounds=model.bounds, norm=norm, field="--eps")
    data = load_data_from_args(args, model)
    results = attack(
        model,
        data.x,
        data.y,
        eps=list(args.eps),
        norm=norm,
        targeted=args.targeted,
        seed=args.seed,
        batch_size=args.batch_size,
        dist=dist,
    )
    if not dist.is_main:
        return 0
    if args.save:
        save_npz(args.save, results, data)
    rows = result_rows(results, model, data, args)
    if args.json:
        print_json(rows[0] if len(rows) == 1 else rows)
        return 0
    _print_table(rows, args)
    return 0


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    first = rows[0]
    target = f", targeted {args.targeted}" if args.targeted else ""
    print(
        f"attack {first['attack']} ({first['norm']}{target}) on {first['model']} / {first['data']} "
        f"(n={first['n']}, device {first['device']}, {first['precision']}, seed {first['seed']})"
    )
    print(f"clean accuracy {first['clean_accuracy']:.4f}")
    header = f"{'eps':>10}  {'robust acc':>10}  {'95% CI':>17}  {'fwd':>9}  {'bwd':>9}  {'queries':>9}  {'time s':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        lo, hi = r["robust_accuracy_ci"]
        print(
            f"{r['eps']:>10.4g}  {r['robust_accuracy']:>10.4f}  [{lo:.4f}, {hi:.4f}]  "
            f"{r['n_forward']:>9d}  {r['n_backward']:>9d}  {r['n_queries']:>9d}  {r['time_s']:>8.2f}"
        )
    if args.save:
        print(f"adversarial examples written to {args.save}")
