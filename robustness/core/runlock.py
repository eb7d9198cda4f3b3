"""One audit per output folder: a lock file held for the whole run.

Two audits in one folder read each other's checkpoint batches, and ``--restart`` would delete
the live run's checkpoint, so a second audit must stop before it touches anything. The lock is
a file in the output folder, created atomically (``O_CREAT | O_EXCL``), that records who holds
it: pid, host, the process's start time and boot id (to survive pid reuse and reboots), when
and with what command the run started.

A lock is stale, and taken over with a warning, when its holder is certainly gone: on this
host, its pid is not running (or is a zombie), or now belongs to a process started at another
time, or the machine restarted since. A lock from another host cannot be checked from here: it
is refused, with how to remove it. The holder removes the lock on every exit path it controls;
``kill -9`` or a power cut leaves a stale lock, which the next run takes over.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from robustness.core.errors import OutputError, RunLockedError
from robustness.core.io import output_error

LOCK_FILE = ".robustness.lock"
# A lock file is written right after it is created; one still unreadable after this long was left
# by a process killed in between.
UNREADABLE_STALE_S = 10.0
PID_MAX = 1 << 22  # Linux's PID_MAX_LIMIT: anything larger is not a pid


class RunLock:
    """The lock of one output folder; :meth:`acquire` before writing there, :meth:`release` after."""

    def __init__(self, outdir: str | Path, *, command: str = "", restart: bool = False, quiet: bool = False):
        self.outdir = Path(outdir)
        self.path = self.outdir / LOCK_FILE
        self.command = command
        self.restart = restart
        self.quiet = quiet
        self._content: bytes | None = None  # what we wrote: release removes only our own lock
        self._created_dir = False

    @property
    def held(self) -> bool:
        return self._content is not None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; raises :class:`RunLockedError` if a run holds it."""
        self._created_dir = prepare_output_folder(self.outdir)
        try:
            # A few rounds: between our look and our move another run may take or drop the lock.
            for _ in range(5):
                if self._try_create():
                    return
                seen = _read(self.path)
                if seen is None:
                    continue  # the holder released it meanwhile
                holder = _parse(seen)
                reason = stale_reason(holder, self.path)
                if reason is None:
                    raise self._locked_error(holder)
                if _take_over(self.path, seen) and not self.quiet:
                    print(
                        f"robustness: warning: {self.outdir} was locked by an audit that is no longer "
                        f"running: {reason} ({_describe(holder)}); taking the lock over",
                        file=sys.stderr,
                    )
            raise RunLockedError(
                f"{self.outdir} keeps being locked and unlocked by other audits",
                field="output.dir",
                fix="Run one audit per output folder: choose another one with -o.",
            )
        except BaseException:
            self._remove_created_dir()
            raise

    def release(self) -> None:
        """Remove our lock (if we hold it) and the output folder if we created it and it is empty."""
        content, self._content = self._content, None
        if content is not None:
            try:
                # Never remove a lock that is not ours (one taken over while we hung, say).
                if self.path.read_bytes() == content:
                    self.path.unlink()
            except OSError:
                pass
        self._remove_created_dir()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- internals -------------------------------------------------------------------------
    def _try_create(self) -> bool:
        """Create the lock file with our record; False if it exists already."""
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "process_start": process_start(os.getpid()),
            "boot_id": boot_id(),
            "command": self.command,
            "token": secrets.token_hex(8),  # tells our lock from an identical-looking one
        }
        content = (json.dumps(record, indent=2) + "\n").encode()
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            _raise_output_error(exc, self.outdir)
        try:
            try:
                os.write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            _raise_output_error(exc, self.outdir)
        self._content = content
        return True

    def _locked_error(self, holder: dict[str, Any] | None) -> RunLockedError:
        kept = " Nothing was deleted (--restart too waits for the folder to be free)." if self.restart else ""
        if holder is None:
            return RunLockedError(
                f"{self.outdir} holds a lock file that cannot be read ({self.path}), just written or "
                f"damaged; another audit may be running there.{kept}",
                field="output.dir",
                fix=f"If no audit is running there, delete {self.path} and rerun; or choose another "
                "output folder with -o.",
            )
        if holder.get("host") != socket.gethostname():
            return RunLockedError(
                f"{self.outdir} is locked by an audit on another machine ({_describe(holder)}), which "
                f"cannot be checked from here.{kept}",
                field="output.dir",
                fix=f"If that audit is no longer running, delete {self.path} and rerun; or choose another "
                "output folder with -o.",
            )
        return RunLockedError(
            f"{self.outdir} is in use by a running audit ({_describe(holder)}); two audits in one folder "
            f"would mix their checkpoints.{kept}",
            field="output.dir",
            fix="Wait for it to finish, stop it, or choose another output folder with -o.",
        )

    def _remove_created_dir(self) -> None:
        if self._created_dir:
            self._created_dir = False
            try:
                self.outdir.rmdir()  # only if empty: a run that failed early leaves nothing behind
            except OSError:
                pass


def prepare_output_folder(outdir: Path) -> bool:
    """Make sure ``outdir`` is a folder we can create files in; True if this call created it."""
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(
            f"{outdir} is a file, not a folder",
            field="output.dir",
            fix="Choose a folder for the outputs with -o (it is created if missing), or move the file away.",
        )
    try:
        outdir.mkdir(parents=True)
        return True
    except FileExistsError as exc:
        if outdir.is_dir():
            return False  # created meanwhile by someone else
        _raise_output_error(exc, outdir)
    except (NotADirectoryError, FileNotFoundError) as exc:
        blocker = next((p for p in outdir.parents if p.exists() and not p.is_dir()), None)
        if blocker is None:
            _raise_output_error(exc, outdir)
        raise OutputError(
            f"{outdir} cannot be created: {blocker} is a file, not a folder",
            field="output.dir",
            fix="Choose an output folder with -o whose parent folders are folders.",
        ) from exc
    except OSError as exc:
        _raise_output_error(exc, outdir)


def _raise_output_error(exc: OSError, outdir: Path) -> NoReturn:
    """Raise the named :class:`OutputError` for a failed write in ``outdir``, else ``exc`` itself."""
    error = output_error(exc, outdir, field="output.dir")
    if error is None:
        raise exc
    raise error from exc


def stale_reason(holder: dict[str, Any] | None, path: Path) -> str | None:
    """Why the lock's holder is certainly gone; None when it may still be running."""
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return None
        return "its lock file was never completed" if age > UNREADABLE_STALE_S else None
    if holder.get("host") != socket.gethostname() or os.name == "nt":
        return None  # another machine's processes (or Windows': os.kill would end them) can't be probed
    pid = holder["pid"]
    recorded_boot = holder.get("boot_id")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return "the machine restarted since"
    state = process_state(pid)
    if state is None or state in ("Z", "X"):
        return "its process has ended"
    start = holder.get("process_start")
    if start is not None and process_start(pid) not in (None, start):
        return "its process id now belongs to another process"
    return None


def process_state(pid: int) -> str | None:
    """None if ``pid`` is not running, else its state letter ('?' where /proc cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by another user
    stat = _proc_stat(pid)
    return stat[0] if stat else "?"


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, from /proc); None where unknown."""
    stat = _proc_stat(pid)
    try:
        return int(stat[19]) if stat else None
    except (IndexError, ValueError):
        return None


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def _read(path: Path) -> bytes | None:
    """The lock file's bytes, retried briefly while it is empty (its holder is writing it)."""
    for _ in range(20):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            _raise_output_error(exc, path.parent)
        if raw.strip():
            return raw
        time.sleep(0.05)
    return raw


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The holder's record, or None if the file does not hold one we can judge."""
    try:
        rec = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict):
        return None
    pid = rec.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < PID_MAX:
        return None  # pid 0 or -1 would make os.kill probe whole process groups
    if not isinstance(rec.get("process_start"), (int, type(None))):
        rec["process_start"] = None
    return rec


def _take_over(path: Path, seen: bytes) -> bool:
    """Move the stale lock ``seen`` out of the way; False if it changed before we could."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # another run took it over first
    try:
        if aside.read_bytes() == seen:
            return True
        # A new holder replaced the stale lock between our look and the move: give it back.
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.rename(aside, path)
        return False
    finally:
        aside.unlink(missing_ok=True)


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "its lock file holds no readable record"
    text = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started', '?')}"
    command = " ".join(str(holder.get("command") or "").split())
    if command:
        text += f"; command: {command[:200]}"
    return text
