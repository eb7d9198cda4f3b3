"""``robustness watermark embed|verify``: mark a model with a trigger set, and test a suspect for the mark."""

from __future__ import annotations

import argparse

from robustness.cli.common import add_model_options, load_model_from_args, print_json, seed_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watermark",
        help="embed a trigger-set watermark, or verify ownership of a suspect model",
        description="Trigger-set (backdoor) watermarks after Adi et al. 2018, verified by an exact binomial test.",
    )
    wsub = p.add_subparsers(dest="watermark_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=lambda args: _usage(p))

    e = wsub.add_parser(
        "embed",
        help="fine-tune a model with a secret trigger set; writes the key and a model folder",
        description="Generate a secret trigger set from a key seed, fine-tune the model on its training data "
        "mixed with the triggers (defenses trainer, method standard) and write the marked model folder, whose "
        "model.json records the key's SHA-256 commitment. Exit 0 when every trigger is learned, the mark "
        "verifies and clean accuracy fell by at most 1 point; 1 otherwise; 2 on bad input.",
    )
    add_model_options(e)
    e.add_argument(
        "--data", required=True, metavar="SPEC", help="clean training data (e.g. builtin:digits:train)"
    )
    e.add_argument(
        "--val-data",
        metavar="SPEC",
        help="held-out data to measure the clean-accuracy cost on (default: the training data)",
    )
    e.add_argument("--key-out", required=True, metavar="KEY", help="where to write the secret key (JSON)")
    e.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the marked model")
    e.add_argument("--n-triggers", type=int, default=100, metavar="K", help="trigger-set size (default 100)")
    e.add_argument("--seed", type=seed_arg, metavar="S", help="secret key seed (default: drawn from the OS)")
    e.add_argument("--epochs", type=int, default=8, metavar="N", help="fine-tuning epochs (default 8)")
    e.add_argument(
        "--lr", type=float, default=2e-3, help="Adam learning rate, cosine schedule (default 2e-3)"
    )
    e.add_argument(
        "--trigger-share",
        type=float,
        default=0.35,
        help="share of each batch that are triggers (default 0.35)",
    )
    e.add_argument("--resume", action="store_true", help="continue an interrupted run (reuses the key file)")
    e.add_argument("--json", action="store_true", help="print the embedding report as JSON")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    e.set_defaults(handler=cmd_embed)

    v = wsub.add_parser(
        "verify",
        help="test a suspect model for the watermark of a key (exit 0 verified, 1 not, 2 bad input)",
        description="Query the suspect on the key's triggers; k of K matches is tested against the null match "
        "rate p0 (largest share of triggers the suspect puts in one class, at least 1/num_classes; raised to "
        "the reference models' 97.5% upper bound when given) with an exact one-sided binomial test.",
    )
    add_model_options(v)
    v.add_argument("--key", required=True, metavar="KEY", help="the key file written by 'watermark embed'")
    v.add_argument("--alpha", type=float, default=1e-6, help="significance level (default 1e-6)")
    v.add_argument(
        "--reference",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="independently trained, unmarked models: calibrate p0 and measure the false-positive rate",
    )
    v.add_argument("--json", action="store_true", help="print one JSON object")
    v.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    v.set_defaults(handler=cmd_verify)


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def cmd_embed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robustness.core.data import load_data
    from robustness.core.errors import UsageError

    if args.n_triggers < 10:
        raise UsageError(
            f"--n-triggers must be >= 10, got {args.n_triggers}", field="--n-triggers", fix="Use 100."
        )
    if args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}", field="--epochs", fix="Use e.g. 8.")
    if args.seed is not None and args.seed < 0:
        raise UsageError(
            f"--seed must be >= 0, got {args.seed}", field="--seed", fix="Use a non-negative integer."
        )
    key_path = Path(args.key_out)
    if key_path.exists() and not args.resume:
        raise UsageError(
            f"the key file {key_path} already exists",
            field="--key-out",
            fix="Choose a new path (an existing key is never overwritten), or pass --resume to continue the "
            "run that wrote it.",
        )
    model = load_model_from_args(args)
    data = load_data(args.data, bounds=model.bounds)
    model.validate(data.x)
    data = load_data(data, bounds=model.bounds, num_classes=model.num_classes)
    val = (
        load_data(args.val_data, bounds=model.bounds, num_classes=model.num_classes)
        if args.val_data
        else None
    )

    from defenses.watermark import WatermarkKey, embed_watermark, load_key

    if args.resume and key_path.exists():
        key = load_key(key_path)
        if args.seed is not None and key.seed != args.seed:
            raise UsageError(
                f"--seed {args.seed} differs from the seed of the existing key {key_path}",
                field="--seed",
                fix="Drop --seed when resuming, or write a new key to another path.",
            )
    else:
        key = WatermarkKey.create(
            input_shape=tuple(data.x.shape[1:]),
            bounds=model.bounds,
            num_classes=int(model.num_classes),
            n_triggers=args.n_triggers,
            seed=args.seed,
            created={"model": model.spec, "model_sha256": model.sha256(), "data": data.spec},
        )
        key.save(key_path)  # first, so a finished training run can never be left without its key
    res = embed_watermark(
        model,
        data,
        key=key,
        epochs=args.epochs,
        lr=args.lr,
        trigger_share=args.trigger_share,
        val_data=val,
        output=args.output,
        resume=args.resume,
        verbose=not args.json,
    )
    rep = {**res.report, "key": str(key_path), "output": str(args.output)}
    if args.json:
        print_json(rep)
    else:
        b, a, v = rep["before"], rep["after"], rep["verification"]
        print(f"watermarked {model.spec} -> {args.output}  (key {key_path}, keep it secret)")
        print(f"  commitment     sha256 {rep['key_sha256']} (recorded in {args.output}/model.json)")
        print(f"  triggers       {a['trigger_accuracy']:.1%} of {rep['n_triggers']} labelled as assigned")
        print(
            f"  clean accuracy {b['clean_accuracy']:.2%} -> {a['clean_accuracy']:.2%} on {rep['accuracy_data']}"
            f" (cost {100 * rep['clean_accuracy_cost']:.2f} points; budget 1)"
        )
        print(f"  self-check     k={v['k']}/{v['K']}  p0={v['p0']:.3f}  p-value={v['p_value']:.3g}")
        if not rep["ok"]:
            print(
                "  NOT OK: the mark was not fully learned, does not verify, or cost more than 1 point of "
                "clean accuracy. Try more --epochs, another --lr or --trigger-share."
            )
    return 0 if rep["ok"] else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from defenses.watermark import load_key, verify
    from robustness.core.errors import UsageError

    if not 0 < args.alpha < 1:
        raise UsageError(
            f"--alpha must be in (0, 1), got {args.alpha}", field="--alpha", fix="Use e.g. 1e-6."
        )
    key = load_key(args.key)  # before the model: a bad key is the cheaper mistake to report
    model = load_model_from_args(args)
    res = verify(model, key, alpha=args.alpha, reference_models=args.reference)
    card = (model.metadata or {}).get("card") or {}
    committed = (card.get("watermark") or {}).get("key_sha256")
    res["card_commitment"] = committed
    res["card_commitment_matches"] = None if committed is None else committed == res["key_sha256"]
    res["model"] = model.spec
    res["key"] = str(args.key)
    if args.json:
        print_json(res)
    else:
        lo, hi = res["match_rate_ci"]
        print(f"watermark verify: {model.spec} against key {args.key}")
        print(
            f"  matches  k/K = {res['k']}/{res['K']}  (match rate {res['k'] / res['K']:.3f}, 95% CI [{lo:.3f}, {hi:.3f}])"
        )
        print(f"  null     p0 = {res['p0']:.3f}  ({res['p0_method']})")
        print(f"  p-value  {res['p_value']:.3g}  (exact one-sided binomial, alpha {res['alpha']:g})")
        if res["false_positive_rate"] is not None:
            n = len(res["references"])
            print(
                f"  references  false-positive rate {res['false_positive_rate']:.2f} over {n} unmarked models"
            )
        if committed is not None:
            state = "matches" if res["card_commitment_matches"] else "DOES NOT match"
            print(f"  card     the model card's key commitment {state} this key")
        verdict = "VERIFIED: the model carries this watermark" if res["verified"] else "NOT VERIFIED"
        print(f"  verdict  {verdict}")
    return 0 if res["verified"] else 1
