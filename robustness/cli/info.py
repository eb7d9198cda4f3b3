"""``robustness env``, ``robustness models`` and ``robustness attacks``: what is here."""

from __future__ import annotations

import argparse
import platform

from robustness.cli.common import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="versions, devices and the cache folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_env)
    p = sub.add_parser("models", help="list the built-in zoo models")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_models)
    p = sub.add_parser("attacks", help="list the registered attacks")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(handler=cmd_attacks)


def environment() -> dict:
    """Versions and devices (recorded in every results file)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from robustness import __version__
    from robustness.zoo import cache_dir

    def _v(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    cuda = torch.cuda.is_available()
    return {
        "robustness_audit": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "art": _v("adversarial-robustness-toolbox"),
        "numpy": _v("numpy"),
        "cuda_available": cuda,
        "devices": ["cpu"]
        + (
            [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
            if cuda
            else []
        ),
        "cpu_threads": torch.get_num_threads(),
        "cache_dir": str(cache_dir()),
    }


def cmd_env(args: argparse.Namespace) -> int:
    env = environment()
    if args.json:
        print_json(env)
    else:
        width = max(len(k) for k in env)
        for k, v in env.items():
            print(f"{k:<{width}}  {', '.join(v) if isinstance(v, list) else v}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from robustness.zoo import ZOO, cache_dir

    rows = [
        {
            "spec": f"zoo:{e.name}",
            "description": e.description,
            "data": e.data,
            "cached": any(cache_dir().glob(f"{e.name}.v*.safetensors")),
        }
        for e in ZOO.items().values()
    ]
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            print(
                f"{r['spec']:<24} {'cached ' if r['cached'] else 'trained on first use'}  {r['description']}"
            )
    return 0


def cmd_attacks(args: argparse.Namespace) -> int:
    from attacks.registry import describe

    rows = describe()
    if args.json:
        print_json(rows)
    else:
        print(f"{'name':<16} {'norms':<14} {'kind':<10} {'targeted':<9} description")
        for r in rows:
            print(
                f"{r['name']:<16} {','.join(r['norms']):<14} {r['kind']:<10} {'yes' if r['targeted'] else 'no':<9} "
                f"{r['description']}"
            )
        print("art:ClassName    (any ART evasion attack, e.g. art:HopSkipJump; runs through the ART bridge)")
    return 0
