"""``robustness attack``: run one attack at one or more eps and report robust accuracy."""

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

# Batch k > 0 of a streamed run is attacked with seed + k * BATCH_SEED_STRIDE: every batch draws
# its own random starts, and batch 0 keeps the seed (data of one batch gives exactly the result
# of attacking it whole).
BATCH_SEED_STRIDE = 65_537


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
    g.add_argument(
        "--batch-size",
        type=batch_size_arg,
        default=512,
        help="samples per attack batch, read and attacked one batch at a time; auto: the largest that "
        "fits on the GPU (default 512)",
    )
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
                "batch_size": args.batch_size,
            }
        )
        if getattr(args, "batch_size_search", None) is not None:
            s["batch_size_search"] = args.batch_size_search
        rows.append(s)
    return rows


class StreamedResults:
    """The per-eps results of an attack run batch by batch: per-sample labels, predictions, success,
    perturbation norms and who broke each sample, and the summed costs. The adversarial inputs
    are not kept (``--save`` writes them to disk as they come, see :class:`AdversarialFile`)."""

    def __init__(self) -> None:
        self.parts: list[list[Any]] = []  # per eps: the batches' AttackResults, inputs dropped

    def add(self, results: list) -> None:
        if not self.parts:
            self.parts = [[] for _ in results]
        for part, r in zip(self.parts, results):
            r.x_adv = None  # the batch's adversarial inputs are written or dropped, never held
            part.append(r)

    def merged(self) -> list:
        """One ``AttackResult`` per eps over all batches (``x_adv`` not held: None)."""
        import torch

        from attacks.base import AttackResult

        out = []
        for part in self.parts:
            first = part[0]

            def cat(name: str, part: list = part) -> torch.Tensor:
                return torch.cat([getattr(r, name).cpu() for r in part])

            out.append(
                AttackResult(
                    attack=first.attack,
                    norm=first.norm,
                    eps=first.eps,
                    x_adv=None,
                    y=cat("y"),
                    clean_pred=cat("clean_pred"),
                    adv_pred=cat("adv_pred"),
                    success=cat("success"),
                    perturbation_norm=cat("perturbation_norm"),
                    n_forward=sum(r.n_forward for r in part),
                    n_backward=sum(r.n_backward for r in part),
                    n_queries=sum(r.n_queries for r in part),
                    time_s=sum(r.time_s for r in part),
                    targets=None if first.targets is None else cat("targets"),
                    params=first.params,
                    broken_by=[label for r in part for label in r.broken_by],
                    members=first.members,
                )
            )
        return out


class AdversarialFile:
    """``--save``: the adversarial inputs of every eps written batch by batch into a memory-mapped
    scratch file beside the target, then packed into the .npz (atomically) and the scratch removed."""

    def __init__(self, path: str, n_eps: int, n: int) -> None:
        self.path = path
        self.n_eps, self.n = n_eps, n
        self.scratch: str | None = None
        self.x_adv: Any = None

    def write(self, start: int, results: list) -> None:
        import os
        import tempfile

        import numpy as np

        if self.x_adv is None:
            shape = (self.n_eps, self.n, *results[0].x_adv.shape[1:])
            folder, name = os.path.split(os.path.abspath(self.path))
            fd, self.scratch = tempfile.mkstemp(prefix=f".{name}.", suffix=".x_adv.npy", dir=folder)
            os.close(fd)
            self.x_adv = np.lib.format.open_memmap(self.scratch, mode="w+", dtype=np.float32, shape=shape)
        for e, r in enumerate(results):
            stop = start + r.x_adv.shape[0]
            self.x_adv[e, start:stop] = r.x_adv.detach().cpu().float().numpy()

    def finish(self, results: list, ids: list[str]) -> None:
        """Write the .npz: x_adv per eps, predictions, success, clean predictions, labels and ids."""
        import zipfile

        import numpy as np

        from robustness.core.io import atomic_write

        arrays = {
            "eps": np.array([r.eps for r in results], dtype=np.float64),
            "adv_pred": np.stack([r.adv_pred.numpy() for r in results]),
            "success": np.stack([r.success.numpy() for r in results]),
            "clean_pred": results[0].clean_pred.numpy(),
            "y": results[0].y.numpy(),
            "ids": np.array(ids, dtype=str),
            "norm": np.array(results[0].norm),
            "attack": np.array(results[0].attack),
        }
        self.x_adv.flush()

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, array in [("eps", arrays.pop("eps")), ("x_adv", self.x_adv), *arrays.items()]:
                    # written in chunks: the adversarial inputs are never all in memory
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as fp:
                        np.lib.format.write_array(fp, np.asarray(array), allow_pickle=False)

        atomic_write(self.path, write)
        self.close()

    def close(self) -> None:
        import os

        self.x_adv = None
        if self.scratch is not None and os.path.exists(self.scratch):
            os.unlink(self.scratch)
        self.scratch = None


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
    from robustness.core.threat import check_eps, check_norm, refuse_duplicate_eps

    check_batch_size(args.batch_size)
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
    stream = open_data_from_args(args, model, backward=True)
    results = attack_stream(attack, model, stream, args, norm, dist)
    if not dist.is_main:
        return 0
    rows = result_rows(results, model, stream, args)
    if args.json:
        print_json(rows[0] if len(rows) == 1 else rows)
        return 0
    _print_table(rows, args)
    return 0


def attack_stream(attack, model, stream, args: argparse.Namespace, norm: str, dist) -> list:
    """Attack the data batch by batch (read, attack at every eps, keep per-sample results, drop the
    inputs): memory holds the batches in flight, not the data set. Under torchrun the batches are
    shared out over the ranks and every rank gets every result; rank 0 writes ``--save``."""
    batch_size = int(args.batch_size)
    n_batches = -(-len(stream) // batch_size)
    saver = AdversarialFile(args.save, len(args.eps), len(stream)) if args.save and dist.is_main else None
    tally = StreamedResults()
    pin = model.device.type == "cuda"
    try:
        world, rank = dist.world_size, dist.rank
        mine = stream.batches(batch_size, numbers=range(rank, n_batches, world), pin_memory=pin)
        # rounds of one batch per rank, gathered after each round, so that every rank holds every
        # result and the results stay in batch order
        for first in range(0, n_batches, world):
            outcome = None
            if first + rank < n_batches:
                batch = next(mine)
                outcome = (int(batch.index[0]), attack_batch(attack, model, batch, args, norm, pin))
            for start, results in sorted(o for o in dist.all_gather_object(outcome) if o is not None):
                if saver is not None:
                    saver.write(start, results)
                tally.add(results)
        merged = tally.merged()
        if saver is not None:
            saver.finish(merged, stream.ids)
    finally:
        if saver is not None:
            saver.close()
    return merged


def attack_batch(attack, model, batch, args: argparse.Namespace, norm: str, pin: bool) -> list:
    """Every eps of one batch, the results moved to the CPU (small: the batch's tensors)."""
    results = attack(
        model,
        batch.x.to(model.device, non_blocking=pin),
        batch.y,
        eps=list(args.eps),
        norm=norm,
        targeted=args.targeted,
        seed=args.seed + batch.number * BATCH_SEED_STRIDE,
        batch_size=int(args.batch_size),
    )
    keep = args.save is not None
    for r in results:
        for name in ("y", "clean_pred", "adv_pred", "success", "perturbation_norm", "targets"):
            value = getattr(r, name)
            if value is not None:
                setattr(r, name, value.cpu())
        r.x_adv = r.x_adv.cpu() if keep else None
    return results


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
