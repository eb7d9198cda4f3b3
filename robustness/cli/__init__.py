"""The ``robustness`` command line.

argparse (standard library) rather than typer/click: no extra dependency, and start-up
stays fast because each command module imports torch only inside its handler. Each
command lives in its own module exposing ``register(subparsers)``; the handler returns
the exit code. :class:`~robustness.errors.RobustnessError` becomes one paragraph on
stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from robustness import __version__


# Every module in robustness/cli with a ``register`` function adds its sub-commands, so a
# new command is one new file. ``common`` holds shared options.
def _command_modules() -> list[str]:
    import pkgutil

    import robustness.cli as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name != "common")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors exit 2 too, with a hint
        self.print_usage(sys.stderr)
        sys.stderr.write(f"robustness: error: {message}. Run '{self.prog} --help' for the options.\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robustness", description="Adversarial robustness audits for PyTorch classifiers.")
    parser.add_argument("--version", action="version", version=f"robustness-audit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _command_modules():
        module = importlib.import_module(f"robustness.cli.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from robustness.errors import RobustnessError

    try:
        return int(args.handler(args) or 0)
    except RobustnessError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"robustness {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("robustness: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
