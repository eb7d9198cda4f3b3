"""The ``robustness`` command line.

argparse (standard library) rather than typer/click: no extra dependency, and start-up
stays fast because each command module imports torch only inside its handler. Each
command lives in its own module exposing ``register(subparsers)``; the handler returns
the exit code. :class:`~robustness.errors.RobustnessError` becomes one paragraph on
stderr and exit code 2 (``--debug`` shows the traceback). Any other exception (raised in the
user's model or data code, out of memory, a bug of ours) also becomes one paragraph and exit
code 2, never 1, which CI reads as "a robustness gate failed".
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

    crashed = False
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
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a raw traceback
        if args.debug:
            traceback.print_exc()
        print(f"robustness {args.command}: {_unexpected_error(exc, args.command)}", file=sys.stderr)
        code, crashed = 2, True
    # Under torchrun every rank exits with the same code; finish() is a no-op in a single process
    # (and robustness.distributed is looked up, not imported: commands that never load it skip this).
    # After a crash the ranks may wait in different collectives, where agreeing could hang: this
    # rank leaves at once and torchrun stops the others.
    dist = sys.modules.get("robustness.distributed")
    return dist.finish(code) if dist is not None and not crashed else code


def _unexpected_error(exc: BaseException, command: str) -> str:
    """One paragraph for an exception that is not a RobustnessError: what happened, what to do."""
    text = " ".join(str(exc).split())
    if len(text) > 400:
        text = text[:400] + " ..."
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    resume = "; rerun the same command to resume the audit where it stopped" if command == "audit" else ""
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (
            f"error: {what}. The device ran out of memory: lower the batch size (--batch-size, or "
            f"data.batch_size in the config){resume}."
        )
    where = _user_frame(exc)
    if where is not None:
        return (
            f"error: {what} (raised in {where}, your model's or data's own code): fix it there; "
            f"--debug shows the traceback{resume}."
        )
    return (
        f"internal error: {what}. This is a bug in robustness-audit or an environment problem, not "
        f"a mistake in your input: rerun with --debug for the traceback and report it{resume}."
    )


def _user_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame in the user's code, if the exception came from there.

    Frames of installed libraries (torch, numpy, ...) are skipped; a frame of this project's
    packages first means the error is ours.
    """
    import sysconfig
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ours = [root / pkg for pkg in ("robustness", "attacks", "defenses", "reports")]
    libs = {
        Path(p).resolve()
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_path(k))
    }
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if any(path.is_relative_to(d) for d in ours):
            return None
        if frame.filename.startswith("<") or any(path.is_relative_to(d) for d in libs):
            continue
        return f"{path}:{frame.lineno}"
    return None


def run() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. 'robustness attacks --json | head': the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
