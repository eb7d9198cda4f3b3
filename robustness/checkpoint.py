"""Resumable audits: one atomic file per finished batch, keyed by a run fingerprint.

The output folder holds ``.checkpoint/``: ``fingerprint.json`` (hashes of the parts of the
config that change the measurements, of the model's weights and of the data), one JSON
file for small records (clean predictions, the model checks) and one ``.npz`` per finished
attack batch. A rerun of the same command loads every finished batch instead of running
it again; since each batch's seed depends only on (seed, eps, stage, batch), the resumed
run ends with the same numbers as an uninterrupted one. An unfinished checkpoint of a
different config, model or data is never mixed in: the run stops and says what changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from robustness.core.errors import CheckpointError, UsageError
from robustness.core.io import atomic_write_bytes, atomic_write_json

FOLDER = ".checkpoint"
FORMAT_VERSION = 2  # 2: every batch keeps its indicators of attack failure
# The arrays of one attack batch (see ``robustness.audit.stages.Stages``); n = samples in the batch.
# ``indicators`` is one JSON text (no pickle): member -> indicator -> [measured, fired], the
# counts of attacks.trace, so that a resumed audit reports the indicators it would have.
BATCH_ARRAYS = ("idx", "success", "adv_pred", "pnorm", "x_adv", "cost", "time_s", "indicators")


def stable_hash(obj: Any) -> str:
    """SHA-256 of a JSON-able object in canonical form."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def derive_seed(seed: int, *parts: Any) -> int:
    """A 31-bit seed from the config seed and a position (eps index, stage key, batch index)."""
    digest = hashlib.sha256("/".join(str(p) for p in (seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Checkpoint:
    """The ``.checkpoint`` folder of one output folder."""

    def __init__(self, outdir: str | Path, parts: dict[str, Any]) -> None:
        self.outdir = Path(outdir)
        self.folder = self.outdir / FOLDER
        self.parts = {k: stable_hash(v) if not isinstance(v, str) else v for k, v in parts.items()}
        self.fingerprint = stable_hash({"version": FORMAT_VERSION, **self.parts})
        self.n_loaded = 0
        self.n_saved = 0

    # -- opening -----------------------------------------------------------------------
    def open(self, *, restart: bool = False) -> str:
        """Prepare the folder; returns 'new', 'resumed' or 'restarted'.

        Raises :class:`UsageError` (exit 2) when an unfinished checkpoint belongs to a
        different run, unless ``restart`` is set. ``restart`` deletes: the caller holds the
        output folder's lock (:mod:`robustness.core.runlock`), so no live run's folder is touched.
        """
        state = "new"
        meta_path = self.folder / "fingerprint.json"
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
            state = "restarted"
        elif meta_path.exists():
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("fingerprint") == self.fingerprint:
                state = "resumed" if any(self.folder.glob("*.npz")) else "new"
            elif old.get("complete"):
                # A finished run of another config: nothing would be mixed, start afresh.
                print(
                    f"robustness: {self.outdir} held a finished audit of a different configuration; "
                    "starting a new one there",
                    file=sys.stderr,
                )
                shutil.rmtree(self.folder)
            else:
                changed = [k for k, v in self.parts.items() if old.get("parts", {}).get(k) != v]
                what = ", ".join(changed) or "the checkpoint format"
                raise UsageError(
                    f"{self.outdir} holds an unfinished audit of a different run (changed: {what}); "
                    "continuing would mix results of different configurations, models or data",
                    field="--restart",
                    fix="Rerun with --restart to discard the unfinished audit, restore what changed to "
                    "resume it, or choose another output folder with -o.",
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_meta(complete=False)
        return state

    def _write_meta(self, *, complete: bool) -> None:
        atomic_write_json(
            self.folder / "fingerprint.json",
            {
                "version": FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "parts": self.parts,
                "complete": complete,
            },
        )

    def mark_complete(self) -> None:
        self._write_meta(complete=True)

    # -- records -----------------------------------------------------------------------
    @staticmethod
    def _safe(key: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)

    def batch_path(self, eps_index: int, stage: str, batch: int) -> Path:
        return self.folder / f"e{eps_index:02d}-{self._safe(stage)}-b{batch:05d}.npz"

    def load_batch(
        self, eps_index: int, stage: str, batch: int, *, sample_shape: tuple[int, ...] | None = None
    ) -> dict[str, np.ndarray] | None:
        """A finished batch's arrays, or None if it is not there (or torn: it is then redone).

        A readable file that does not hold the arrays an attack batch has (``BATCH_ARRAYS``,
        shapes agreeing with each other and with ``sample_shape``) raises
        :class:`CheckpointError`: it was not written by this audit, and guessing could give
        wrong numbers.
        """
        path = self.batch_path(eps_index, stage, batch)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                rec = {k: f[k] for k in f.files}
        except Exception:  # noqa: BLE001 - a torn or corrupt file is redone, never trusted
            return None
        problem = batch_problem(rec, sample_shape)
        if problem:
            raise CheckpointError(
                f"this checkpoint batch file does not hold what the audit wrote: {problem}",
                field=str(path),
                fix=f"Rerun the same command with --restart to discard the unfinished audit in "
                f"{self.outdir} and run it afresh (or choose another output folder with -o).",
            )
        self.n_loaded += 1
        return rec

    def save_batch(self, eps_index: int, stage: str, batch: int, record: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **record)
        atomic_write_bytes(self.batch_path(eps_index, stage, batch), buf.getvalue())
        self.n_saved += 1

    def load_json(self, name: str) -> Any | None:
        path = self.folder / f"{self._safe(name)}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def save_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.folder / f"{self._safe(name)}.json", obj)


def batch_problem(rec: dict[str, np.ndarray], sample_shape: tuple[int, ...] | None = None) -> str | None:
    """What is wrong with an attack batch record (None if nothing)."""
    missing = [k for k in BATCH_ARRAYS if k not in rec]
    extra = sorted(set(rec) - set(BATCH_ARRAYS))
    if missing or extra:
        return "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
            )
            if part
        )
    idx, success = rec["idx"], rec["success"]
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        return f"idx must be a list of sample indices, got {idx.dtype} of shape {idx.shape}"
    n = idx.shape[0]
    for key, kinds in (("success", "b"), ("adv_pred", "iu"), ("pnorm", "f")):
        a = rec[key]
        if a.shape != (n,) or a.dtype.kind not in kinds:
            return f"{key} has {a.dtype} of shape {a.shape}, expected one value per sample ({n})"
    x_adv = rec["x_adv"]
    n_broken = int(success.sum())
    want = (n_broken, *sample_shape) if sample_shape is not None else None
    if (
        x_adv.dtype.kind != "f"
        or x_adv.ndim < 1
        or x_adv.shape[0] != n_broken
        or (want and x_adv.shape != want)
    ):
        shape = want if want else f"({n_broken}, ...)"
        return f"x_adv has {x_adv.dtype} of shape {x_adv.shape}, expected {shape} (one per success)"
    if rec["cost"].shape != (3,) or rec["cost"].dtype.kind not in "iu":
        return f"cost has {rec['cost'].dtype} of shape {rec['cost'].shape}, expected 3 integers"
    if rec["time_s"].shape != () or rec["time_s"].dtype.kind != "f":
        return f"time_s has {rec['time_s'].dtype} of shape {rec['time_s'].shape}, expected one number"
    try:
        batch_indicators(rec)
    except ValueError as exc:
        return f"indicators: {exc}"
    return None


def indicators_array(counts: dict[str, dict[str, list[int]]]) -> np.ndarray:
    """The ``indicators`` entry of a batch record: the counts as one JSON text."""
    return np.array(json.dumps(counts, sort_keys=True))


def batch_indicators(rec: dict[str, np.ndarray]) -> dict[str, dict[str, list[int]]]:
    """The indicator counts of a batch record (member -> indicator -> [measured, fired]);
    ValueError when the entry is not what :func:`indicators_array` writes."""
    entry = rec["indicators"]
    if entry.shape != () or entry.dtype.kind != "U":
        raise ValueError(f"expected one JSON text, got {entry.dtype} of shape {entry.shape}")
    try:
        counts = json.loads(str(entry))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    ok = isinstance(counts, dict) and all(
        isinstance(member, str)
        and isinstance(per, dict)
        and all(
            isinstance(name, str)
            and isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
            and 0 <= pair[1] <= pair[0]
            for name, pair in per.items()
        )
        for member, per in counts.items()
    )
    if not ok:
        raise ValueError("expected {member: {indicator: [measured, fired]}} with 0 <= fired <= measured")
    return counts
