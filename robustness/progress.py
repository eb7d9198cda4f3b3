"""Progress of an audit: a live line on a terminal, plain lines in CI logs, or nothing.

``live`` rewrites one status line on stderr (eps, attack, samples still robust, batch,
ETA of the stage), at most ten times a second. ``plain`` prints one line when an attack
finishes at an eps, plus a heartbeat every 30 seconds during a long attack: readable in a
CI log, never a flood. ``off`` prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

HEARTBEAT_S = 30.0


def choose_mode(progress: str = "auto", quiet: bool = False, stream: TextIO | None = None) -> str:
    """'live', 'plain' or 'off' from the ``--progress`` flag, ``--quiet`` and the stream."""
    if quiet or progress == "off":
        return "off"
    stream = stream or sys.stderr
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if progress == "on":  # forced: the live line even where the stream is not a terminal
        return "live"
    return "live" if is_tty else "plain"


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class Progress:
    """Reports what the runner is doing. All methods are cheap no-ops when ``mode`` is 'off'."""

    def __init__(self, mode: str = "plain", stream: TextIO | None = None, clock=time.monotonic) -> None:
        self.mode = mode
        self.stream = stream or sys.stderr
        self.clock = clock
        self.t_start = clock()
        self._stage: tuple[str, str] | None = None
        self._stage_t0 = 0.0
        self._batches = 0
        self._done = 0
        self._robust = 0
        self._n = 0
        self._last_draw = 0.0
        self._last_beat = 0.0
        self._live_len = 0

    # -- events ------------------------------------------------------------------------
    def message(self, text: str) -> None:
        if self.mode == "off":
            return
        self._clear()
        print(text, file=self.stream, flush=True)

    def stage_start(
        self, eps: float, attack: str, n_todo: int, n_batches: int, n_robust: int, n: int
    ) -> None:
        self._stage = (f"{eps:g}", attack)
        self._stage_t0 = self.clock()
        self._last_beat = self._stage_t0
        self._batches, self._done = n_batches, 0
        self._robust, self._n = n_robust, n
        self._draw(force=True)

    def batch_done(self, n_robust: int) -> None:
        self._done += 1
        self._robust = n_robust
        now = self.clock()
        if self.mode == "plain" and now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            eps, attack = self._stage or ("?", "?")
            print(
                f"  ... eps {eps} {attack}: batch {self._done}/{self._batches}, "
                f"{self._robust}/{self._n} still robust, ETA {_fmt_s(self._eta(now))}",
                file=self.stream,
                flush=True,
            )
        self._draw()

    def stage_done(
        self,
        eps: float,
        attack: str,
        n_attacked: int,
        n_broken: int,
        n_robust: int | None,
        n: int,
        time_s: float,
        resumed: bool,
    ) -> None:
        """One line per attack and eps; ``n_robust`` None for check stages that do not change it."""
        if self.mode == "off":
            return
        self._clear()
        note = " (from checkpoint)" if resumed else ""
        robust = f", robust {n_robust}/{n} ({n_robust / max(n, 1):.3f})" if n_robust is not None else ""
        print(
            f"eps {eps:g} {attack:<20} broke {n_broken}/{n_attacked}{robust}  {time_s:.1f}s{note}  "
            f"[elapsed {_fmt_s(self.clock() - self.t_start)}]",
            file=self.stream,
            flush=True,
        )
        self._stage = None

    def close(self) -> None:
        self._clear()

    # -- drawing -----------------------------------------------------------------------
    def _eta(self, now: float) -> float:
        if self._done == 0:
            return float("nan")
        per = (now - self._stage_t0) / self._done
        return per * (self._batches - self._done)

    def _draw(self, force: bool = False) -> None:
        if self.mode != "live" or self._stage is None:
            return
        now = self.clock()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        eps, attack = self._stage
        eta = self._eta(now)
        eta_s = "--" if eta != eta else _fmt_s(eta)
        line = (
            f"eps {eps} | {attack} | batch {self._done}/{self._batches} | "
            f"still robust {self._robust}/{self._n} | ETA {eta_s} | elapsed {_fmt_s(now - self.t_start)}"
        )
        pad = max(0, self._live_len - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._live_len = len(line)

    def _clear(self) -> None:
        if self.mode == "live" and self._live_len:
            self.stream.write("\r" + " " * self._live_len + "\r")
            self.stream.flush()
            self._live_len = 0
