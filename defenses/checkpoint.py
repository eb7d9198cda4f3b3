"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the weights, optimiser, scheduler and AMP scaler states, every random
number generator the run draws from, the epoch, the best epoch's weights and metrics, the
early-stopping counter, the log and the method's own state (a private method's privacy
accounting, so that a resumed run reports the epsilon of every step taken). It is written atomically after every epoch, so a run
killed at any moment resumes from the last completed epoch and ends with the same weights
(on CPU) as a run that was never interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustness.core.errors import UsageError
from robustness.core.io import atomic_write

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """States of the global CPU/CUDA generators and the run's own generators."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    state.update({f"gen:{k}": g.get_state() for k, g in generators.items()})
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, g in generators.items():
        g.set_state(state[f"gen:{k}"])


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``folder/checkpoint.pt`` atomically (temporary file, then rename)."""
    return atomic_write(folder / CHECKPOINT, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load(folder: Path) -> dict[str, Any] | None:
    """The checkpoint in ``folder``, or None when there is none."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to decide about
        raise UsageError(
            f"cannot read the checkpoint {path}: {type(exc).__name__}: {exc}",
            field="resume",
            fix="Delete the output folder and start again, or choose another --output.",
        ) from exc
    if state.get("format") != FORMAT:
        raise UsageError(
            f"{path} was written by an incompatible version (format {state.get('format')})",
            field="resume",
            fix="Start a new run in another --output folder.",
        )
    return state
