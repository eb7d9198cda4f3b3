"""samples.jsonl, the per-sample outcomes written beside results.json: read and checked.

One JSON object per line: the sample's ``id``, ``label``, ``clean_pred`` and, at every eps of
the grid, whether it stayed robust, the attack that broke it and the perturbation's norm
(``adv_pred``, the prediction on the adversarial example, where the audit recorded it). The
HTML report's drill-down and :mod:`robustness.tables` read it through :func:`read_samples`;
nothing here recomputes a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustness.core.errors import DataError

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class SampleAtEps:
    """One sample's outcome at one eps."""

    eps: float
    robust: bool
    broken_by: str | None  # None: robust, or already misclassified without an attack
    perturbation_norm: float | None
    # The prediction at this eps: on the worst example found where an attack broke the sample,
    # else the clean prediction (no example changed it); None where the file does not record it.
    adv_pred: int | None


@dataclass(frozen=True)
class SampleRecord:
    """One line of samples.jsonl."""

    id: str
    label: int
    clean_pred: int
    at: tuple[SampleAtEps, ...]

    def at_eps(self, eps: float) -> SampleAtEps | None:
        return next((a for a in self.at if abs(a.eps - eps) <= 1e-12), None)


def samples_path(results: Any, folder: str | Path) -> Path:
    """Where the samples file of ``results`` (a typed result) lies: the name its ``files`` give."""
    name = (getattr(results, "files", None) or {}).get("samples") or SAMPLES_FILE
    return Path(folder) / name


def read_samples(path: str | Path) -> list[SampleRecord]:
    """Every sample of a samples.jsonl; a :class:`DataError` naming the line for a damaged one."""
    p = Path(path)
    out: list[SampleRecord] = []
    seen: set[str] = set()
    try:
        fh = open(p, encoding="utf-8")
    except OSError as exc:
        raise DataError(
            f"cannot read {p} ({exc.strerror or exc})",
            field=str(p),
            fix="Copy samples.jsonl along with results.json, or re-run the audit.",
        ) from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = _record(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{p} line {lineno} is not a sample record ({type(exc).__name__}: {exc})",
                    field=str(p),
                    fix="The file is damaged or was edited; re-run the audit.",
                ) from None
            if record.id in seen:
                raise DataError(
                    f"sample id {record.id!r} appears twice in {p} (line {lineno})",
                    field=str(p),
                    fix="Sample ids are unique in the file an audit writes; re-run the audit.",
                )
            seen.add(record.id)
            out.append(record)
    return out


def _record(row: Any) -> SampleRecord:
    if not isinstance(row, dict):
        raise TypeError("expected an object")
    at = row["eps"]
    if not isinstance(at, list):
        raise TypeError("'eps' is not a list")
    clean_pred = _int(row["clean_pred"], "clean_pred")
    return SampleRecord(
        id=str(row["id"]),
        label=_int(row["label"], "label"),
        clean_pred=clean_pred,
        at=tuple(_at(a, clean_pred) for a in at),
    )


def _at(a: Any, clean_pred: int) -> SampleAtEps:
    if not isinstance(a, dict):
        raise TypeError("an 'eps' entry is not an object")
    robust = a["robust"]
    if not isinstance(robust, bool):
        raise TypeError(f"robust is {robust!r}, not true or false")
    broken_by = a.get("broken_by")
    norm = a.get("perturbation_norm")
    pred = a.get("adv_pred")
    if pred is None and (robust or broken_by is None):
        pred = clean_pred  # no attack changed the prediction
    return SampleAtEps(
        eps=_float(a["eps"], "eps"),
        robust=robust,
        broken_by=None if broken_by is None else str(broken_by),
        perturbation_norm=None if norm is None else _float(norm, "perturbation_norm"),
        adv_pred=None if pred is None else _int(pred, "adv_pred"),
    )


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} is {v!r}, not an integer")
    return v


def _float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise TypeError(f"{name} is {v!r}, not a finite number")
    return float(v)
