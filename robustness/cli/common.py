"""Options shared by several commands, and output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_model_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        required=required,
        metavar="SPEC",
        help="zoo:NAME, file.pt2, file.pt/.ts (TorchScript), package.module:callable, or a harden folder",
    )
    g.add_argument(
        "--weights", metavar="FILE", help="weights for a factory spec (.safetensors or state-dict .pt)"
    )
    add_model_arg_option(g)
    g.add_argument(
        "--trust-model",
        action="store_true",
        help="run code the model names or carries: a pickled nn.Module, a torch.export file with pickled "
        "entries, a model folder naming a non-built-in factory (only for models from a trusted source)",
    )
    g.add_argument(
        "--bounds", nargs=2, type=float, metavar=("LOW", "HIGH"), help="input bounds (default 0 1)"
    )
    g.add_argument("--mean", nargs="+", type=float, help="per-channel mean applied inside the model")
    g.add_argument("--std", nargs="+", type=float, help="per-channel std applied inside the model")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    g.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="the model's forward pass in float32 (default) or under bfloat16 autocast (GPU; attack "
        "arithmetic stays float32)",
    )
    g.add_argument(
        "--channels-last", action="store_true", help="NHWC memory layout (faster convolutions on GPU)"
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on long runs)")
    g.add_argument(
        "--threads",
        type=threads_arg,
        default="auto",
        metavar="N",
        help="CPU threads for the model (default auto: 1 for a model whose batch pass is tiny, else the "
        "free cores)",
    )


def add_model_arg_option(g: Any) -> None:
    """``--model-arg KEY=VALUE`` (repeatable): keyword arguments for a factory model spec."""
    g.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for a factory --model (e.g. num_classes=10); repeatable; VALUE is parsed "
        "as JSON when it can be, else kept a string",
    )


def parse_key_values(items: list[str], *, flag: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values are JSON when they parse as JSON, else strings."""
    from robustness.core.errors import UsageError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"{flag} expects KEY=VALUE, got {item!r}", field=flag, fix=f"Write e.g. {flag} {example}."
            )
        low = raw.strip()
        aliases = {"True": True, "False": False, "None": None}
        if low in aliases:
            value: Any = aliases[low]
        else:
            try:
                value = json.loads(low)
            except ValueError:  # not JSON (or an integer of thousands of digits): the string itself
                value = raw
        out[key] = value
    return out


def model_args_from(args: argparse.Namespace) -> dict[str, Any] | None:
    """The factory's keyword arguments given with ``--model-arg`` (None when none)."""
    items = getattr(args, "model_arg", None) or []
    return parse_key_values(items, flag="--model-arg", example="num_classes=10") if items else None


def threads_arg(text: str) -> int | str:
    """argparse type of ``--threads``: ``auto`` or a count (the rule is core.threads.check_threads)."""
    from robustness.core.errors import ConfigError
    from robustness.core.threads import MAX_THREADS, check_threads

    try:
        return check_threads(text if text == "auto" else int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"must be auto or an integer from 1 to {MAX_THREADS}, got {text[:30]!r}"
        ) from None


def add_data_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        required=required,
        metavar="SPEC",
        help="builtin:digits, builtin:digits:train, cifar10:DIR / cifar100:DIR (official files; :train for "
        "the training split), folder:DIR (one sub-folder of images per class), file.npz (x, y), or "
        "package.module:callable (returning arrays or a torch.utils.data.Dataset)",
    )
    add_data_source_options(g)
    g.add_argument("--n-examples", type=int, metavar="N", help="evaluate a reproducible subset of N samples")
    g.add_argument(
        "--seed",
        type=seed_arg,
        default=0,
        help="seed for the subset and the attacks (0 to 2^32-1; default 0)",
    )


def add_data_source_options(g: Any) -> None:
    """``--data-arg``, ``--image-size`` and ``--image-mode``: how the data spec is read."""
    g.add_argument(
        "--data-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for a factory --data (e.g. root=/data/val); repeatable; VALUE is parsed "
        "as JSON when it can be, else kept a string",
    )
    g.add_argument(
        "--image-size",
        type=int,
        metavar="N",
        help="image folders: resize each image's shorter side to N and crop the centre N x N square "
        "(needed when the images differ in size)",
    )
    g.add_argument(
        "--image-mode", choices=("RGB", "L"), help="image folders: RGB (3 channels, default) or L (grey)"
    )


def data_options_from(args: argparse.Namespace) -> dict[str, Any]:
    """The data options of the flags (``load_data``/``open_data`` keywords); unset ones left out."""
    items = getattr(args, "data_arg", None) or []
    options = {
        "args": parse_key_values(items, flag="--data-arg", example="root=/data/val") if items else None,
        "image_size": getattr(args, "image_size", None),
        "image_mode": getattr(args, "image_mode", None),
    }
    return {key: value for key, value in options.items() if value is not None}


def batch_size_arg(text: str) -> int | str:
    """argparse type of ``--batch-size``: ``auto`` or an integer (checked > 0 by the command)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a positive integer, got {text[:30]!r}") from None


def check_batch_size(value: int | str) -> None:
    from robustness.core.errors import UsageError

    if value != "auto" and int(value) <= 0:
        raise UsageError(
            f"--batch-size must be > 0, got {value}", field="--batch-size", fix="Use e.g. 256, or auto."
        )


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: an integer in the range every seed of the tool takes."""
    from robustness.config import SEED_MAX, seed_problem

    try:
        value = int(text)
    except ValueError:  # not an integer, or one of thousands of digits
        value = None
    if value is None or seed_problem(value):
        shown = text if len(text) <= 30 else text[:20] + "..."
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEED_MAX}, got {shown!r}")
    return value


def load_model_from_args(args: argparse.Namespace):
    from robustness.core.model import load_model

    return load_model(
        args.model,
        weights=args.weights,
        trust_model=args.trust_model,
        bounds=args.bounds,
        mean=args.mean,
        std=args.std,
        device=args.device,
        precision=getattr(args, "precision", "fp32"),
        channels_last=getattr(args, "channels_last", False),
        compile=getattr(args, "compile", False),
        model_args=model_args_from(args),
    )


def load_data_from_args(args: argparse.Namespace, model):
    """Load the data checked against the model: bounds, input shape (by a validating forward
    pass) and labels within the model's classes."""
    from robustness.core.data import load_data, validate_dataset

    data = load_data(
        args.data,
        n_examples=args.n_examples,
        seed=args.seed,
        bounds=model.bounds,
        model_outputs=model.num_classes,
        **data_options_from(args),
    )
    model.validate(data.x)
    if data.num_classes != model.num_classes:  # the model's class count was unknown until validate()
        data = validate_dataset(data, bounds=model.bounds, model_outputs=model.num_classes)
    threads = getattr(args, "threads", "auto")
    if threads != "auto" or model.device.type == "cpu":
        from robustness.core.threads import apply_threads, batch_pass_probe

        apply_threads(threads, batch_pass_probe(model, data.x, getattr(args, "batch_size", None) or 128))
    return data


def open_data_from_args(args: argparse.Namespace, model, *, backward: bool):
    """The data as a stream checked against the model (its first samples through a validating
    forward pass; every batch, as it is read, against the bounds and the model's classes), and
    the batch size (``--batch-size auto`` resolved, see ``core.batchsize``; the search recorded in
    ``args.batch_size_search``). ``backward``: batches will be attacked (forward and backward)."""
    from robustness.core.data import open_data

    stream = open_data(
        args.data,
        n_examples=args.n_examples,
        seed=args.seed,
        bounds=model.bounds,
        model_outputs=model.num_classes,
        **data_options_from(args),
    )
    head = stream.peek(8)
    model.validate(head)
    # the model's class count was unknown until validate(); the batches are checked against it
    stream.expect(bounds=model.bounds, model_outputs=model.num_classes)
    args.batch_size_search = None
    if args.batch_size == "auto":
        from robustness.core.batchsize import auto_batch_size

        found = auto_batch_size(model, head, len(stream), backward=backward)
        args.batch_size, args.batch_size_search = found.size, found.to_dict()
    threads = getattr(args, "threads", "auto")
    if threads != "auto" or model.device.type == "cpu":
        from robustness.core.threads import apply_threads, batch_pass_probe

        # a batch of data in memory costs nothing to take; one read from files is kept small
        n_probe = int(args.batch_size) if stream.in_memory else min(int(args.batch_size), 128)
        probe_x = stream.peek(n_probe) if n_probe > head.shape[0] else head
        apply_threads(threads, batch_pass_probe(model, probe_x, int(args.batch_size)))
    return stream


def print_json(obj: Any) -> None:
    from robustness.core.io import _json_default

    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")
