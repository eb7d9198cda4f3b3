"""``robustness harden``: adversarial training / distillation of a model into a model folder."""

from __future__ import annotations

import argparse
from typing import Any

from robustness.cli.common import add_model_arg_option, model_args_from, seed_arg

INIT_HELP = (
    "where the weights start: 'scratch' (freshly initialised, seeded) or 'weights' (fine-tune the given "
    "weights). Default 'auto': zoo:NAME and a factory without --weights mean an architecture trained from "
    "scratch; a model folder, or a factory with --weights, is fine-tuned. Use '--init weights' to fine-tune "
    "a zoo model's trained weights."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "harden",
        help="train a model with one of the training methods (adversarial training, distillation, plain "
        "training) into a model folder",
        description=(
            "Train a classifier with one of the methods and write a model folder (model.safetensors, model.json, "
            "training_curve.png, train_log.jsonl, checkpoint.pt) that '--model DIR' loads. A checkpoint is "
            "written after every epoch; rerun the same command with --resume to continue an interrupted run. "
            "The methods and their options are listed below."
        ),
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="an architecture or a model: zoo:NAME, package.module:callable (a factory), or a harden folder",
    )
    g.add_argument(
        "--weights", metavar="FILE", help="weights for a factory spec (.safetensors or state-dict .pt)"
    )
    add_model_arg_option(g)
    g.add_argument("--init", choices=("auto", "scratch", "weights"), default="auto", help=INIT_HELP)
    g.add_argument(
        "--trust-model",
        action="store_true",
        help="allow a model folder whose model.json names a factory that is not built in (imports and "
        "calls it: only for folders from a trusted source)",
    )
    g.add_argument(
        "--bounds", nargs=2, type=float, metavar=("LOW", "HIGH"), help="input bounds (default 0 1)"
    )
    g.add_argument("--mean", nargs="+", type=float, help="per-channel mean applied inside the model")
    g.add_argument("--std", nargs="+", type=float, help="per-channel std applied inside the model")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")

    d = p.add_argument_group("data")
    d.add_argument(
        "--data", required=True, metavar="SPEC", help="training data, e.g. builtin:digits:train or file.npz"
    )
    d.add_argument("--n-examples", type=int, metavar="N", help="train on a reproducible subset of N samples")
    d.add_argument("--val-data", metavar="SPEC", help="validation data (default: a held-out share of --data)")
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of --data held out for validation when --val-data is not given (default 0.1; 0: none)",
    )

    t = p.add_argument_group("training")
    method = t.add_argument("--method", default="standard", help="the training method (default standard)")
    t.add_argument(
        "--eps", type=float, help="radius trained against and validated at (needed by adversarial methods)"
    )
    t.add_argument("--norm", default="linf", help="linf, l2 or l1 (default linf)")
    t.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    t.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    t.add_argument("--optimizer", default="adam", help="sgd (momentum 0.9) or adam (default adam)")
    schedule = t.add_argument(
        "--schedule", help="cosine, onecycle, cyclic or constant (default: the method's)"
    )
    t.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (default 0; 5e-4 is common)")
    t.add_argument("--patience", type=int, help="stop after N epochs without a better validation score")
    t.add_argument(
        "--last", action="store_true", help="keep the last epoch instead of the best validation epoch"
    )
    t.add_argument(
        "--attack-train-mode",
        action="store_true",
        help="craft training examples with the network in train mode (default: eval mode for batch-norm)",
    )
    t.add_argument("--seed", type=seed_arg, default=0, help="seed for initialisation, data order and attacks")
    t.add_argument("--amp", default="off", help="mixed precision on CUDA: bf16, fp16 or off (default off)")

    m = p.add_argument_group("method options", "hyper-parameters that the methods declare")
    m.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyper-parameter of the method (repeatable); each also has a flag of its own below where its "
        "name allows one",
    )
    _add_method_flags_on_first_use(p, m, method=method, schedule=schedule)

    o = p.add_argument_group("output")
    o.add_argument("--output", required=True, metavar="DIR", help="the model folder to write")
    o.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    o.add_argument("--json", action="store_true", help="print the final model card as JSON")
    o.add_argument("--quiet", action="store_true", help="no per-epoch output")
    p.set_defaults(handler=cmd_harden)


# Namespace attributes of the per-method flags: "method-param:NAME" (apart from every other option).
FLAG_DEST = "method-param:"


def _add_method_flags_on_first_use(
    parser: argparse.ArgumentParser, group: argparse._ArgumentGroup, **actions: argparse.Action
) -> None:
    """Add a flag per declared hyper-parameter, and the methods to the help, when harden is used.

    The declarations live in the method files, which import torch; building them into the
    parser when ``harden`` parses or prints its help (not when any command's parser is built)
    keeps every other command's start-up free of torch.
    """
    parse_known_args, format_help = parser.parse_known_args, parser.format_help
    added: list[bool] = []

    def ensure() -> None:
        if not added:
            added.append(True)
            add_method_flags(parser, group, **actions)

    def parse_with_method_flags(args: Any = None, namespace: Any = None) -> Any:
        ensure()
        return parse_known_args(args, namespace)

    def help_with_method_flags() -> str:
        ensure()
        return format_help()

    parser.parse_known_args = parse_with_method_flags  # type: ignore[method-assign]
    parser.format_help = help_with_method_flags  # type: ignore[method-assign]


def add_method_flags(
    parser: argparse.ArgumentParser,
    group: argparse._ArgumentGroup,
    *,
    method: argparse.Action,
    schedule: argparse.Action,
) -> None:
    """``--NAME`` for every hyper-parameter the registered methods declare; the methods in the help.

    A name declared with different types by two methods, or taken by another option of harden,
    gets no flag of its own: ``--param NAME=VALUE`` sets it.
    """
    from defenses.objective import OBJECTIVES

    objectives = OBJECTIVES.items()
    listed = {name: cls for name, cls in objectives.items() if cls.listed}
    # hyper-parameter name -> (method, declaration) for every method that declares it
    declarations: dict[str, list[tuple[str, Any]]] = {}
    for method_name, cls in objectives.items():
        for name, param in cls.hyperparameters.items():
            declarations.setdefault(name, []).append((method_name, param))
    for name, uses in sorted(declarations.items()):
        if len({param.type for _, param in uses}) > 1:
            continue
        shown = [(method_name, param) for method_name, param in uses if method_name in listed] or uses
        helps: dict[str, list[str]] = {}  # one help text per distinct declaration, with its methods
        for method_name, param in shown:
            text = param.help if param.default is None else f"{param.help}, default {param.default}"
            helps.setdefault(text, []).append(method_name)
        param = uses[0][1]
        options: dict[str, Any] = {
            "dest": FLAG_DEST + name,
            "default": None,
            "help": "; ".join(f"{text} ({', '.join(names)})" for text, names in helps.items()),
        }
        if param.type is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options.update(type=param.type, choices=param.choices)
            if not param.choices:
                options["metavar"] = name.upper()
        try:
            group.add_argument(f"--{name.replace('_', '-')}", **options)
        except argparse.ArgumentError:  # the name of another option of harden: --param only
            continue
    method.help = f"the training method: {', '.join(listed)} (default {method.default}; described below)"
    by_schedule: dict[str, list[str]] = {}
    for name, cls in listed.items():
        by_schedule.setdefault(cls.default_schedule, []).append(name)
    if by_schedule:
        usual = max(by_schedule, key=lambda schedule_name: len(by_schedule[schedule_name]))
        others = "".join(f"; {s} for {', '.join(names)}" for s, names in by_schedule.items() if s != usual)
        schedule.help = f"cosine, onecycle, cyclic or constant (default: {usual}{others})"
    parser.epilog = "methods: " + " | ".join(f"{name}: {cls.description}" for name, cls in listed.items())


def method_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The hyper-parameters given by their flags and by ``--param KEY=VALUE``, typed by the declaration."""
    from defenses.objective import get_objective_class
    from robustness.core.errors import UsageError

    declared = get_objective_class(method).hyperparameters
    values = {
        key[len(FLAG_DEST) :]: value
        for key, value in vars(args).items()
        if key.startswith(FLAG_DEST) and value is not None
    }
    for item in args.param:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"--param takes KEY=VALUE, got {item!r}", field="--param", fix="Give e.g. --param beta=3."
            )
        if key in values:
            raise UsageError(
                f"{key} given twice (a flag and --param {key}=...)", field="--param", fix="Give it once."
            )
        # An undeclared name stays text: the configuration says it does not apply to the method.
        values[key] = declared[key].parse(key, text) if key in declared else text
    return values


def resolve_start(args: argparse.Namespace) -> dict[str, Any]:
    """Architecture, input spec and starting weights named by ``--model``/``--weights``/``--init``."""
    import json
    from pathlib import Path

    from robustness.core.errors import ModelError, UsageError
    from robustness.core.model import MODEL_CARD, check_folder_architecture

    spec = args.model
    model_args = model_args_from(args)
    path = Path(spec)
    if model_args and (spec.startswith("zoo:") or path.exists() or ":" not in spec):
        raise UsageError(
            f"--model-arg is only passed to a factory 'package.module:callable', and {spec!r} is not one",
            field="--model-arg",
            fix="Drop --model-arg, or name the architecture's factory as --model.",
        )
    if spec.startswith("zoo:"):
        from robustness import zoo

        e = zoo.entry(spec[4:])
        if args.weights:
            raise UsageError(
                "--weights cannot be combined with a zoo model", field="weights", fix="Drop --weights."
            )
        init = "scratch" if args.init == "auto" else args.init
        return {
            "architecture": {"factory": spec},
            "bounds": e.bounds,
            "mean": None,
            "std": None,
            "num_classes": e.num_classes,
            "init": init,
            "weights_from": spec if init == "weights" else None,
        }
    if path.is_dir():
        card_path = path / MODEL_CARD
        if not card_path.exists():
            raise ModelError(
                f"{path} has no {MODEL_CARD}",
                field="model",
                fix="Point at a folder written by 'robustness harden'.",
            )
        card = json.loads(card_path.read_text())
        # The card is data from whoever sent the folder: its factory runs only when built in or trusted.
        check_folder_architecture(card.get("architecture"), trust_model=args.trust_model, source=card_path)
        init = "weights" if args.init == "auto" else args.init
        return {
            "architecture": card["architecture"],
            "bounds": tuple(card.get("bounds") or (0.0, 1.0)),
            "mean": card.get("mean"),
            "std": card.get("std"),
            "num_classes": card.get("num_classes"),
            "init": init,
            "weights_from": str(path) if init == "weights" else None,
        }
    if ":" in spec and not path.exists():
        init = ("weights" if args.weights else "scratch") if args.init == "auto" else args.init
        if init == "weights" and not args.weights:
            raise UsageError(
                "--init weights needs --weights FILE for a factory spec",
                field="init",
                fix="Give --weights FILE, or train from scratch (--init scratch).",
            )
        return {
            "architecture": {"factory": spec, "kwargs": model_args or {}},
            "bounds": (0.0, 1.0),
            "mean": None,
            "std": None,
            "num_classes": None,
            "init": init,
            "weights_from": args.weights if init == "weights" else None,
        }
    raise ModelError(
        f"harden needs an architecture it can rebuild, and {spec!r} is not one",
        field="model",
        fix="Give zoo:NAME, a factory 'package.module:callable' (with --weights to fine-tune), or a folder "
        "written by 'robustness harden'; TorchScript and torch.export files cannot be trained further here.",
    )


def build_module(start: dict[str, Any], args: argparse.Namespace, seed: int):
    import torch

    from robustness.core.model import build_architecture, load_model_dir, load_weights

    torch.manual_seed(seed)  # the initial weights are part of the seeded run
    if start["init"] == "scratch":
        return build_architecture(start["architecture"])
    spec = args.model
    if spec.startswith("zoo:"):
        from robustness import zoo

        return zoo.load(spec[4:])[0]
    from pathlib import Path

    if Path(spec).is_dir():
        return load_model_dir(Path(spec), trust_model=args.trust_model)[0]
    module = build_architecture(start["architecture"])
    load_weights(module, args.weights)
    return module


def cmd_harden(args: argparse.Namespace) -> int:
    from defenses import TrainConfig, Trainer
    from robustness.cli.common import print_json
    from robustness.core.data import load_data
    from robustness.core.distributed import init_from_env
    from robustness.core.threat import check_bounds

    # Under torchrun: join the ranks (DistributedDataParallel training; rank 0 writes and prints).
    dist = init_from_env(args.device)
    start = resolve_start(args)
    bounds = check_bounds(args.bounds if args.bounds is not None else start["bounds"], field="bounds")
    config = TrainConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule=args.schedule,
        weight_decay=args.weight_decay,
        eps=args.eps,
        norm=args.norm,
        params=method_params(args, args.method),
        attack_eval_mode=not args.attack_train_mode,
        val_fraction=0.0 if args.val_data else args.val_fraction,
        patience=args.patience,
        select_best=not args.last,
        seed=args.seed,
        amp=args.amp,
    )
    config.resolved(bounds)  # fail on a bad option before any data is loaded or weights are built
    module = build_module(start, args, args.seed)
    num_classes = start["num_classes"]
    train = load_data(
        args.data, n_examples=args.n_examples, seed=args.seed, bounds=bounds, num_classes=num_classes
    )
    val = None
    if args.val_data:
        val = load_data(args.val_data, bounds=bounds, num_classes=num_classes or train.num_classes)
    trainer = Trainer(
        module,
        config,
        architecture=start["architecture"],
        bounds=bounds,
        mean=args.mean if args.mean is not None else start["mean"],
        std=args.std if args.std is not None else start["std"],
        num_classes=num_classes or train.num_classes,
        device=args.device,
        verbose=not args.quiet,
    )
    trainer.card_extra = {
        "init": start["init"],
        "weights_from": start["weights_from"],
        "model_spec": args.model,
    }
    if not args.quiet and dist.is_main:
        what = "from scratch" if start["init"] == "scratch" else f"fine-tuning {start['weights_from']}"
        trainer.echo(f"harden: {trainer.config.method} on {args.data}, {what}, output {args.output}")
    result = trainer.fit(train, val=val, output=args.output, resume=args.resume)
    if not dist.is_main:
        return 0
    if args.json:
        import json
        from pathlib import Path

        print_json(json.loads((Path(args.output) / "model.json").read_text()))
        return 0
    m = result.metrics

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    print(
        f"wrote {args.output}: {m['epochs_run']} epochs, selected epoch {m['selected_epoch']} ({m['selection']}); "
        f"validation clean {pct(m['val_clean_accuracy'])}, robust {pct(m['val_robust_accuracy'])} (PGD-"
        f"{trainer.config.val_steps}); {m['train_time_s']:.1f}s"
    )
    if result.stopped:
        print(f"stopped: {result.stopped}")
    if result.extra:
        # What the method records at the top of model.json (a private run: the spent epsilon and delta).
        print(
            "recorded in model.json: "
            + ", ".join(f"{key} {value:.4g}" for key, value in result.extra.items())
        )
    print(f"evaluate it: robustness attack --model {args.output} --data DATA --attack autoattack --eps E")
    return 0
