"""The files an audit writes: results.json from the typed result, samples.jsonl, examples.npz,
and the renderers' reports.

``results.json`` is the one contract between the runner and every reader; its models, version
and loader are :mod:`robustness.core.schema` (``robustness schema --results`` prints the JSON
Schema). Files are written atomically and ``results.json`` first, so a failing renderer can
never cost the results.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustness.core.io import atomic_write, atomic_write_bytes, atomic_write_json
from robustness.core.schema import (
    RESULTS_FILE,
    SCHEMA_VERSION,  # noqa: F401 - the runner's import
    AuditResults,
    parse_results,
)

SAMPLES_FILE = "samples.jsonl"
EXAMPLES_FILE = "examples.npz"
MAX_EXAMPLES = 8


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("robustness", "__main__.py")):
        argv[0] = "robustness"
    return shlex.join(argv)


def environment(device: str, seed: int, cmd: str, precision: str = "fp32") -> dict[str, Any]:
    """Versions and settings needed to reproduce the run."""
    import torch

    try:
        from importlib.metadata import version

        art = version("adversarial-robustness-toolbox")
    except Exception:  # noqa: BLE001 - ART is optional at run time
        art = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "art": art,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": device,
        "precision": precision,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "command_line": cmd,
    }


def sample_line(
    sid: str,
    label: int,
    clean_pred: int,
    eps: Sequence[float],
    robust: Sequence[bool],
    broken_by: Sequence[str | None],
    pnorm: Sequence[float],
    adv_pred: Sequence[int],
) -> str:
    """One line of samples.jsonl: a sample and, per eps, its outcome there."""
    return json.dumps(
        {
            "id": sid,
            "label": int(label),
            "clean_pred": int(clean_pred),
            "eps": [
                {
                    "eps": e,
                    "robust": bool(robust[j]),
                    "broken_by": broken_by[j],
                    "perturbation_norm": float(pnorm[j]),
                    "adv_pred": int(adv_pred[j]),
                }
                for j, e in enumerate(eps)
            ],
        }
    )


def pick_examples(labels: np.ndarray, first_broken: np.ndarray, k: int = MAX_EXAMPLES) -> np.ndarray:
    """Indices of up to ``k`` samples for the image grid: broken ones first (smallest eps first),
    one per class before repeating a class; then robust ones."""
    n = len(labels)
    never = np.iinfo(np.int64).max
    order = sorted(range(n), key=lambda i: (first_broken[i] if first_broken[i] >= 0 else never, i))
    chosen: list[int] = []
    seen: set[int] = set()
    for i in order:  # first pass: distinct classes
        if len(chosen) < k and int(labels[i]) not in seen:
            chosen.append(i)
            seen.add(int(labels[i]))
    for i in order:  # then fill
        if len(chosen) < k and i not in chosen:
            chosen.append(i)
    chosen.sort(key=lambda i: order.index(i))
    return np.asarray(chosen, dtype=np.int64)


def write_examples(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def typed_results(results: AuditResults | dict[str, Any]) -> AuditResults:
    """The typed result of what the runner assembled (its types checked, not its numbers)."""
    return parse_results(results, "the audit's results", check_numbers=False)


def write_results(outdir: Path, results: AuditResults | dict[str, Any]) -> Path:
    """results.json, written from the typed result."""
    return atomic_write_json(Path(outdir) / RESULTS_FILE, typed_results(results).to_dict())


def write_samples(outdir: Path, lines: Iterable[str]) -> Path:
    """samples.jsonl, written a line at a time (it grows with the samples; nothing holds it whole)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(Path(outdir) / SAMPLES_FILE, write)


def render_reports(
    results: AuditResults | dict[str, Any], outdir: Path, formats: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Run the renderers on the typed result (``reports.render_all``); returns ({format: path},
    {format: error}).

    A renderer that fails costs its own file only; the failure is reported on stderr (one
    line each) and returned for results.json's ``renderer_errors``.
    """
    wanted = [f for f in formats if f != "json"]
    errors: dict[str, str] = {}
    if not wanted:
        return {}, errors
    try:
        from reports import render_all
    except Exception as exc:  # noqa: BLE001 - the renderers are optional for the numbers
        msg = f"{type(exc).__name__}: {exc}"
        for f in wanted:
            errors[f] = f"renderers unavailable ({msg})"
            print(
                f"robustness: the {f} report could not be written (renderers unavailable: {msg})",
                file=sys.stderr,
            )
        return {}, errors
    try:
        written = render_all(typed_results(results), Path(outdir), wanted, errors=errors)
    except Exception as exc:  # noqa: BLE001 - render_all isolates renderers; this is a last resort
        msg = f"{type(exc).__name__}: {exc}"
        print(f"robustness: the reports could not be written ({msg})", file=sys.stderr)
        return {}, {f: msg for f in wanted}
    return dict(written), errors
