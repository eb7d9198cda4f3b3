"""Atomic file writes and hashing: outputs are never left half-written.

A write that fails because of where it goes (disk full, over quota, read-only file system, no
permission, a file where a folder should be) raises :class:`~robustness.core.errors.OutputError`
naming the file, so the command line reports it as the user's environment, not as our bug.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustness.core.errors import OutputError

# errno values that only a write gives: a full disk, a quota, a file size limit, a read-only mount.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e)
WRITE_ERRNOS = DISK_FULL_ERRNOS | {errno.EROFS}


def output_error(exc: OSError, path: str | os.PathLike, *, field: str | None = None) -> OutputError | None:
    """The :class:`OutputError` for a failed write of ``path``; None if ``exc`` is not about the place.

    ``field`` names the input that chose the place (e.g. ``output.dir``); by default, the file.
    """
    where = str(path)
    field = field or where
    it = where if field != where else "it"  # the file is named once: as the field, or in the message
    if exc.errno in DISK_FULL_ERRNOS:
        return OutputError(
            f"cannot write {it}: {os.strerror(exc.errno)} (the disk is full or over its quota)",
            field=field,
            fix="Free space on that disk or write somewhere else, then rerun the command "
            "(an audit resumes from its checkpoint).",
        )
    if exc.errno == errno.EROFS:
        return OutputError(
            f"cannot write {it}: the file system is read-only",
            field=field,
            fix="Write somewhere writable (for an audit: -o OUTDIR).",
        )
    if isinstance(exc, PermissionError):
        return OutputError(
            f"cannot write {it}: permission denied",
            field=field,
            fix="Write to a folder you may write to (for an audit: -o OUTDIR), or change its permissions.",
        )
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return OutputError(
            f"cannot write {it}: a file stands where a folder is needed ({exc.filename or where})",
            field=field,
            fix="Choose a folder path (it is created if missing), or move that file away.",
        )
    if isinstance(exc, IsADirectoryError):
        return OutputError(
            f"cannot write {it}: a folder stands where the file should go",
            field=field,
            fix="Move that folder away or write somewhere else.",
        )
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``.

    The temporary file lives in the target folder so the rename is atomic on POSIX. Raises
    :class:`OutputError` when the place cannot be written (see :func:`output_error`).
    """
    target = Path(path)
    try:
        return _atomic_write(target, write)
    except OSError as exc:
        error = output_error(exc, target)
        if error is None:
            raise
        raise error from exc


def _atomic_write(target: Path, write: Callable[[str], None]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give the result the mode a plain open() would have.
    os.chmod(tmp, _file_mode(target))
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def _file_mode(target: Path) -> int:
    """The existing file's permissions, else 0666 minus the umask."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, _w)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, _w)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
