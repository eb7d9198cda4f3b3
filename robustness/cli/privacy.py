"""``robustness privacy``: membership inference against a model, reported as TPR at low FPR."""

from __future__ import annotations

import argparse
import sys

from robustness.cli.common import (
    add_model_options,
    load_model_from_args,
    parse_key_values,
    print_json,
    seed_arg,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "privacy",
        help="membership inference: does the model reveal who was in its training set?",
        description="Score every member and non-member with a membership-inference attack and report the "
        "true-positive rate at 1%%, 0.1%% and 0%% false positives with exact 95%% Clopper-Pearson intervals, "
        "AUC, membership advantage, per-class leakage and the most exposed samples. rmia and lira compare "
        "the model with reference models that never saw an audited sample: given with --reference-models, "
        "or trained here (the model's own architecture and the recipe options below) on --reference-data "
        "without the audited samples, or, without it, on half of the members and non-members held out of "
        "the audit. Exit 0; 2 on bad input.",
    )
    add_model_options(p)
    p.add_argument("--members", required=True, metavar="SPEC", help="samples the model was trained on")
    p.add_argument("--non-members", required=True, metavar="SPEC", help="samples it never saw")
    p.add_argument(
        "--attack",
        choices=("loss", "rmia", "lira"),
        default="lira",
        help="loss: loss threshold (Yeom et al. 2018); rmia: offline RMIA (Zarifzadeh et al. 2024); lira: "
        "offline LiRA with a fixed variance (Carlini et al. 2022), the default: the strongest at low FPR on "
        "confident models, whose saturated probabilities blunt RMIA",
    )
    p.add_argument(
        "--reference-models",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="models of the same task trained without any audited sample (rmia, lira)",
    )
    g = p.add_argument_group("reference models trained here (when --reference-models is not given)")
    g.add_argument(
        "--reference-data",
        metavar="SPEC",
        help="their training pool; the audited samples are removed from it",
    )
    g.add_argument("--n-references", type=int, default=4, metavar="N", help="how many (default 4)")
    g.add_argument(
        "--reference-architecture",
        metavar="SPEC",
        help="zoo:NAME or package.module:callable (default: the model's own architecture)",
    )
    g.add_argument("--reference-method", default="standard", help="training method (default standard)")
    g.add_argument("--reference-epochs", type=int, default=20, metavar="N", help="epochs (default 20)")
    g.add_argument(
        "--reference-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the training method, e.g. target_epsilon=3 for dp-sgd; repeatable",
    )
    p.add_argument("--n-members", type=int, metavar="N", help="audit a seeded subset of N members")
    p.add_argument("--n-non-members", type=int, metavar="N", help="audit a seeded subset of N non-members")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="S", help="seed of subsets and references")
    p.add_argument("--json", action="store_true", help="print one JSON object (the attack's result)")
    p.set_defaults(handler=cmd_privacy)


def _positive(value: int | None, flag: str) -> None:
    from robustness.core.errors import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}", field=flag, fix=f"Give a positive {flag}.")


def cmd_privacy(args: argparse.Namespace) -> int:
    from robustness.core.formatting import ci, pct
    from robustness.privacy.audit import privacy_audit
    from robustness.privacy.references import ReferenceRecipe

    for flag in ("n_references", "reference_epochs", "n_members", "n_non_members"):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    model = load_model_from_args(args)
    recipe = ReferenceRecipe(
        n_models=args.n_references,
        architecture=args.reference_architecture,
        method=args.reference_method,
        epochs=args.reference_epochs,
        seed=args.seed,
        params=parse_key_values(args.reference_param, flag="--reference-param", example="target_epsilon=3"),
    )
    res = privacy_audit(
        model,
        args.members,
        args.non_members,
        [args.attack],
        reference_models=args.reference_models,
        recipe=recipe,
        reference_data=args.reference_data,
        n_members=args.n_members,
        n_non_members=args.n_non_members,
        seed=args.seed,
        field_prefix="--",
        progress=None if args.json else (lambda text: print(text, file=sys.stderr, flush=True)),
    )
    attack = res["attacks"][0]
    out = {
        "model": model.spec,
        "members": res["members"],
        "non_members": res["non_members"],
        **attack,
        "accuracy": res["accuracy"],
        "references": res["references"],
    }
    if args.json:
        print_json(out)
        return 0
    print(f"{attack['title']} on {model.spec}")
    print(
        f"members {res['members']} (n={attack['n_members']}), non-members {res['non_members']} (n={attack['n_non_members']})"
    )
    acc = res["accuracy"]
    print(f"model accuracy: members {pct(acc['members'])}, non-members {pct(acc['non_members'])}")
    for p in attack["operating_points"]:
        star = "" if p["resolved"] else "  (too few non-members: read at the first false positive)"
        print(f"TPR at FPR {pct(p['fpr'], 1):>6}: {pct(p['tpr'], 2):>7} {ci(p['tpr_ci'], 2)}{star}")
    print(
        f"AUC {attack['auc']:.4f} (no leak: 0.5 +/- {attack['auc_null_sd']:.4f}), advantage {attack['advantage']:.4f}"
    )
    print(
        f"leak {'DETECTED' if attack['leak_detected'] else 'not shown'} (adjusted p-value {attack['leak_p_value']:.2g})"
    )
    return 0
