"""The ``robustness`` command line.

argparse (standard library) rather than typer/click: no extra dependency, and start-up
stays fast because each command module imports torch only inside its handler. Each
command lives in its own module exposing ``register(subparsers)``; the handler returns
the exit code. :class:`~robustness.core.errors.RobustnessError` becomes one paragraph on
stderr and exit code 2 (``--debug`` shows the traceback). Any other exception (raised in the
user's model or data code, out of memory, a full disk, a bug of ours) also becomes one paragraph
and exit code 2, never 1, which CI reads as "a robustness gate failed". So does ``sys.exit()``,
``KeyboardInterrupt`` or any ``BaseException`` raised by the user's code: it ended the run
before a result, and exit 0 would read as a pass. Only a real Ctrl-C (SIGINT) exits 130, and a
reader of stdout that leaves early (``robustness attacks | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

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
    try:
        args = parser.parse_args(argv)  # usage errors, --help and --version exit here, as argparse does
    except BrokenPipeError:  # '--help | head -1'
        silence_stdout()
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from robustness.core.errors import RobustnessError

    crashed = False
    code: int | None = None
    with _sigint_watch() as sigint:
        try:
            code = int(args.handler(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit (where it prints a traceback)
        except RobustnessError as exc:
            if args.debug:
                traceback.print_exc()
            # one paragraph: messages that quote a library's multi-line error are folded onto one line
            print(f"robustness {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
            code = exc.exit_code
        except BrokenPipeError as exc:
            code, crashed = _closed_pipe(exc, args, code)
        except KeyboardInterrupt as exc:
            if sigint.seen or _user_frame(exc) is None:  # Ctrl-C, not the user's code raising it
                print("robustness: interrupted", file=sys.stderr)
                code = 130
            else:
                code, crashed = _crashed(exc, args), True
        except BaseException as exc:  # noqa: BLE001 - the last line of defence: never a raw traceback
            # Exception, and also SystemExit (sys.exit() in a model's forward) or another
            # BaseException from the user's code: never the exit code it carries, never 0.
            code, crashed = _crashed(exc, args), True
    # Under torchrun every rank exits with the same code; finish() is a no-op in a single process
    # (and robustness.core.distributed is looked up, not imported: commands that never load it skip this).
    # After a crash the ranks may wait in different collectives, where agreeing could hang: this
    # rank leaves at once and torchrun stops the others.
    dist = sys.modules.get("robustness.core.distributed")
    return dist.finish(code) if dist is not None and not crashed else code


def _crashed(exc: BaseException, args: argparse.Namespace) -> int:
    """Report an exception that is not a RobustnessError in one paragraph; the exit code (2)."""
    if args.debug:
        traceback.print_exception(exc)
    _print_error(f"robustness {args.command}: {_unexpected_error(exc, args.command)}")
    return 2


def _closed_pipe(exc: BrokenPipeError, args: argparse.Namespace, code: int | None) -> tuple[int, bool]:
    """The exit code (and whether this rank crashed) after a BrokenPipeError.

    The reader of stdout left (``| head -1``): what is still buffered goes nowhere and the command
    ends quietly, with the code its handler returned, else 0. Two exceptions: a pipe the user's
    own code wrote to is its error, and an audit cut short (it prints only after writing
    results.json) has no result, so it never exits 0.
    """
    if code is None and _user_frame(exc) is not None:
        return _crashed(exc, args), True
    silence_stdout()
    if code is not None:
        return code, False
    if args.command == "audit":
        _print_error(
            "robustness audit: error: stdout was closed before the audit finished, so it wrote no "
            "results; rerun it without closing its output (e.g. redirect it to a file)."
        )
        return 2, True
    return 0, False


def silence_stdout() -> None:
    """Send stdout to /dev/null after its reader left, so that flushing at exit stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured)
        pass


def _print_error(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except OSError:  # stderr closed too: the exit code is all that is left
        pass


class _SigintSeen:
    seen = False


@contextlib.contextmanager
def _sigint_watch() -> Iterator[_SigintSeen]:
    """Notes whether a real SIGINT (Ctrl-C) arrives, to tell it from ``raise KeyboardInterrupt``.

    Only where Python's own handler is installed and we are on the main thread; elsewhere
    ``seen`` stays False and a KeyboardInterrupt is judged by where it was raised.
    """
    state = _SigintSeen()
    try:
        previous = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):
        previous = None
    if (
        threading.current_thread() is not threading.main_thread()
        or previous is not signal.default_int_handler
    ):
        yield state
        return

    def on_sigint(signum: int, frame: object) -> None:
        state.seen = True
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _unexpected_error(exc: BaseException, command: str) -> str:
    """One paragraph for an exception that is not a RobustnessError: what happened, what to do."""
    text = " ".join(str(exc).split())
    if len(text) > 400:
        text = text[:400] + " ..."
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, SystemExit):
        what = f"sys.exit({exc.code!r})"
    resume = "; rerun the same command to resume the audit where it stopped" if command == "audit" else ""
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (
            f"error: {what}. The device ran out of memory: lower the batch size (--batch-size, or "
            f"data.batch_size in the config){resume}."
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        from robustness.core.io import WRITE_ERRNOS, output_error

        # A write the atomic writer did not make (a library's own save): still the place, not a bug.
        if exc.errno in WRITE_ERRNOS and (error := output_error(exc, exc.filename or "a file")):
            return f"error: {' '.join(str(error).split())}"
    where = _user_frame(exc)
    if where is not None and not isinstance(exc, Exception):
        # sys.exit(), KeyboardInterrupt, ...: the user's code ended the run before any result.
        return (
            f"error: {what} in {where} (your model's or data's own code) ended the run before it "
            "finished, so there is no result: remove it there and rerun; --debug shows the traceback."
        )
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
    """The console script: ``main()``, then its exit code."""
    code = 0
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. 'robustness --help | head -1': the reader left, not an error
        silence_stdout()  # main's code stands; 0 if it had none yet
    except KeyboardInterrupt:  # Ctrl-C while starting up, before a command ran
        _print_error("robustness: interrupted")
        code = 130
    sys.exit(code)
