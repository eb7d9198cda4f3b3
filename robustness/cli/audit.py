"""``robustness audit``, ``robustness validate`` and ``robustness schema``.

Exit codes of ``audit``: 0 pass; 1 a gate failed; 2 bad usage, config, model or data;
3 unreliable (a sanity check failed and was not waived). ``--exit-zero`` reports and
exits 0 whatever the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustness.cli.common import (
    add_data_source_options,
    batch_size_arg,
    data_options_from,
    model_args_from,
    threads_arg,
)
from robustness.presets import PRESETS

EXIT_CODES = {"pass": 0, "fail": 1, "unreliable": 3}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="run a config-driven robustness audit (results.json, samples, PDF, JUnit, Markdown)",
        description="Run the audit a config file describes. Flags override the file. Exit codes: 0 pass, "
        "1 a gate failed, 2 bad usage/config/model/data, 3 unreliable (a sanity check failed).",
    )
    p.add_argument("config", metavar="CONFIG", help="audit config (.yaml/.yml or .toml)")
    p.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (overrides output.dir)")
    p.add_argument("--model", metavar="SPEC", help="model spec (overrides model.spec)")
    p.add_argument("--weights", metavar="FILE", help="weights for a factory spec (overrides model.weights)")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a keyword argument for a factory model; repeatable; VALUE is JSON when it parses, else a "
        "string (sets that key of model.args)",
    )
    p.add_argument("--data", metavar="SPEC", help="data spec (overrides data.spec)")
    add_data_source_options(p)  # --data-arg (sets that key of data.args), --image-size, --image-mode
    p.add_argument(
        "--n-examples", type=int, metavar="N", help="number of samples (overrides data.n_examples)"
    )
    p.add_argument("--eps", type=float, nargs="+", metavar="E", help="eps grid (overrides threat.eps)")
    p.add_argument("--norm", choices=["linf", "l2", "l1"], help="norm (overrides threat.norm)")
    p.add_argument("--preset", choices=PRESETS, help="attack preset (overrides attacks)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides model.device)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="the model's forward pass in float32 or under bfloat16 autocast (overrides model.precision)",
    )
    p.add_argument("--seed", type=int, help="seed (overrides seed)")
    p.add_argument(
        "--batch-size",
        type=batch_size_arg,
        metavar="B",
        help="samples per attack batch, or auto (the largest that fits the GPU; overrides data.batch_size)",
    )
    p.add_argument(
        "--threads",
        type=threads_arg,
        metavar="N",
        help="CPU threads for the model: auto or a count (overrides threads)",
    )
    from reports import output_formats

    p.add_argument(
        "--format",
        nargs="+",
        dest="formats",
        choices=output_formats(),  # json and every registered renderer
        help="outputs to write (overrides output.formats; results.json is always written)",
    )
    p.add_argument("--exit-zero", action="store_true", help="exit 0 whatever the verdict (still reports it)")
    p.add_argument("--restart", action="store_true", help="discard an unfinished checkpoint in OUTDIR")
    p.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="live display on a terminal, plain lines otherwise (auto, default), forced on, or off",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final verdict line")
    p.set_defaults(handler=cmd_audit)

    v = sub.add_parser("validate", help="check an audit config without running it")
    v.add_argument("config", metavar="CONFIG")
    v.add_argument("--json", action="store_true", help="print the resolved config as JSON")
    v.set_defaults(handler=cmd_validate)

    s = sub.add_parser(
        "schema",
        help="print the JSON schema of audit configs (or, with --results, of results.json)",
        description="Print the JSON Schema of audit config files, or with --results the JSON Schema of "
        "the results.json an audit writes.",
    )
    s.add_argument(
        "--results", action="store_true", help="the schema of results.json instead of the config's"
    )
    s.set_defaults(handler=cmd_schema)


def _data_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The data flags as ``run_audit`` overrides (``data.args``, ``data.image_size``, ``data.image_mode``)."""
    options = data_options_from(args)
    if "args" in options:
        options["data_args"] = options.pop("args")
    return options


def cmd_audit(args: argparse.Namespace) -> int:
    from robustness.audit import run_audit
    from robustness.audit.outputs import command_line
    from robustness.core.distributed import init_from_env

    # Under torchrun: join the ranks (the batches are shared out; rank 0 writes and prints).
    dist = init_from_env(args.device or _config_device(args.config))
    results = run_audit(
        args.config,
        model=args.model,
        weights=args.weights,
        model_args=model_args_from(args),
        data=args.data,
        **_data_overrides(args),
        n_examples=args.n_examples,
        eps=args.eps,
        norm=args.norm,
        preset=args.preset,
        device=args.device,
        precision=args.precision,
        seed=args.seed,
        batch_size=args.batch_size,
        threads=args.threads,
        formats=args.formats,
        output_dir=args.output,
        restart=args.restart,
        progress=args.progress,
        quiet=args.quiet,
        command_line=command_line(),
    )
    code = EXIT_CODES[results["verdict"]]
    if dist.is_main:
        _check_results_written(results)
        try:
            _print_summary(results, quiet=args.quiet)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader of stdout left ('| head -1'): results.json and the verdict stand
            from robustness.cli import silence_stdout

            silence_stdout()
    return 0 if args.exit_zero else code


def _check_results_written(results: dict) -> None:
    """Raise unless this run's results.json is on disk: a verdict without it must never exit 0."""
    from robustness.audit.outputs import RESULTS_FILE
    from robustness.core.errors import OutputError

    path = Path(results["config"]["output"]["dir"]) / RESULTS_FILE
    try:
        on_disk = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        on_disk = None
    # created (to the second) and the total time (to the millisecond) tell this run's file from an older one
    mine = isinstance(on_disk, dict) and all(
        on_disk.get(key) == results.get(key) for key in ("created", "timing", "verdict")
    )
    if not mine:
        raise OutputError(
            f"the audit ended without writing its results to {path} (missing, unreadable or from "
            "another run), so its verdict cannot be trusted",
            field="output.dir",
            fix="Rerun the audit; if this happens again, rerun with --debug and report it.",
        )


def _config_device(path: str) -> str:
    """The config's model.device, to pick the process-group backend (the config is validated later)."""
    try:
        from robustness.config import load_config

        return str(load_config(path).model.device)
    except Exception:  # noqa: BLE001 - a bad config is reported by run_audit, with its field
        return "auto"


def _print_summary(results: dict, *, quiet: bool) -> None:
    outdir = results["config"]["output"]["dir"]
    line = f"verdict: {results['verdict'].upper()} - {results['verdict_reason']}"
    if quiet:
        print(line)
        return
    c = results["clean"]
    print(f"model {results['model']['spec']} on {results['data']['spec']} (n={results['data']['n']})")
    print(f"clean accuracy   {c['accuracy']:.4f}  95% CI [{c['ci'][0]:.4f}, {c['ci'][1]:.4f}]")
    for r in results["robust"]:
        print(
            f"robust @ {r['norm']} eps {r['eps']:<8g} {r['accuracy']:.4f}  95% CI [{r['ci'][0]:.4f}, "
            f"{r['ci'][1]:.4f}]  ({r['time_s']:.1f}s)"
        )
    for ch in results["sanity_checks"]:
        if ch["status"] in ("fail", "waived"):
            print(f"check {ch['name']}: {ch['status']} - {ch['detail']}")
    for g in results["gates"]:
        print(f"gate {g['name']}: {'pass' if g['passed'] else 'FAIL'} - {g['detail']}")
    t = results["timing"]
    print(f"time {t['total_s']:.1f}s (attacks {t['attacks_s']:.1f}s, checks {t['checks_s']:.1f}s)")
    files = ", ".join(sorted({"results.json", *results.get("files", {}).values()}))
    print(f"wrote {outdir}/: {files}")
    print(line)


def cmd_validate(args: argparse.Namespace) -> int:
    from robustness.config import check_config, check_inputs, load_config

    cfg = load_config(args.config)
    attacks = check_config(cfg)
    # What the audit checks when it starts (files exist, output folder usable): "valid" means
    # the audit will start. Nothing is loaded or trained.
    check_inputs(cfg)
    if args.json:
        json.dump(
            {**cfg.model_dump(mode="json"), "resolved_attacks": [a.model_dump() for a in attacks]},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return 0
    names = ", ".join(a.name for a in attacks)
    print(
        f"{args.config}: valid. {cfg.model.spec} on {cfg.data.spec}, {cfg.threat.norm} eps "
        f"{', '.join(f'{e:g}' for e in cfg.threat.eps)}; attacks: {names}; output: {cfg.output.dir}"
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    if getattr(args, "results", False):
        from robustness.core.schema import results_json_schema as json_schema
    else:
        from robustness.config import json_schema

    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
