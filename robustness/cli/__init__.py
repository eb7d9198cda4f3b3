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
import os
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
    # ``--debug`` is accepted after the command too (where users type it); SUPPRESS keeps the
    # sub-parser from overwriting a ``--debug`` given before the command.
    for command in sub.choices.values():
        try:
            command.add_argument(
                "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
        except argparse.ArgumentError:  # the command defines its own --debug
            pass
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from robustness.errors import RobustnessError

    try:
        code = int(args.handler(args) or 0)
    except RobustnessError as exc:
        if args.debug:
            traceback.print_exc()
        # one paragraph: messages that quote a library's multi-line error are folded onto one line
        print(f"robustness {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("robustness: interrupted", file=sys.stderr)
        code = 130
    # Under torchrun every rank exits with the same code; finish() is a no-op in a single process
    # (and robustness.distributed is looked up, not imported: commands that never load it skip this).
    dist = sys.modules.get("robustness.distributed")
    return dist.finish(code) if dist is not None else code


def run() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. 'robustness attacks --json | head': the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
