"""``--batch-size auto``: the largest batch that fits on the accelerator, found by trying.

A trial runs what a batch of the command will run (a forward pass for predictions; a forward
pass and an input-gradient backward pass for attacks) on a batch of that many copies of real
inputs, starting from ``AUTO_START`` (or the data size, if smaller) and halving on every
out-of-memory error until one fits. The sizes tried and the one chosen are recorded in the
command's output. On the CPU there is no out-of-memory error to search by (the system swaps or
kills the process), so ``auto`` means ``CPU_DEFAULT``, recorded as such.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from robustness.core.errors import RobustnessError

AUTO_START = 4096
CPU_DEFAULT = 256
# A batch that fits alone may not fit with an attack's own tensors (its iterates, momentum,
# best examples) beside it: when the search hit the memory limit, or the fitting trial used more
# than 1/HEADROOM of the device's memory, the size used is the one that fitted divided by this.
HEADROOM = 2


@dataclass
class BatchSizeSearch:
    """What ``auto`` found: the batch size used, the trials (size, fitted) and how it was chosen."""

    size: int
    tried: list[tuple[int, bool]] = field(default_factory=list)
    how: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.size,
            "tried": [{"size": s, "fitted": ok} for s, ok in self.tried],
            "how": self.how,
        }


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the accelerator running out of memory (in any of torch's ways of saying it)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text or "CUDNN_STATUS_ALLOC_FAILED" in text
    )


def search(
    trial: Callable[[int], None], start: int, *, on_failure: Callable[[], None] = lambda: None
) -> BatchSizeSearch:
    """Halve from ``start`` until ``trial(size)`` runs without an out-of-memory error.

    Any other error of the trial propagates. ``on_failure`` runs after each out-of-memory
    error (to give the memory back). Raises :class:`RobustnessError` if a batch of one fails.
    """
    size = max(1, int(start))
    tried: list[tuple[int, bool]] = []
    while True:
        try:
            trial(size)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled; the rest re-raised
            if not is_out_of_memory(exc):
                raise
            tried.append((size, False))
            on_failure()
            if size == 1:
                raise RobustnessError(
                    "a batch of one sample does not fit in the accelerator's memory",
                    field="--batch-size",
                    fix="Free the device (other processes), use a smaller model or inputs, or run on the CPU.",
                ) from None
            size //= 2
            continue
        tried.append((size, True))
        return BatchSizeSearch(size, tried, f"the largest trial that fitted: {size}")


def trial_batch(model: Any, example: torch.Tensor, size: int, *, backward: bool) -> None:
    """One batch of ``size`` copies of ``example`` (cycled) through ``model``, with an input-gradient
    backward pass when ``backward``."""
    reps = -(-size // example.shape[0])
    batch = example.repeat(reps, *([1] * (example.dim() - 1)))[:size].to(model.device)
    with model.evaluating(freeze=True):
        if backward:
            batch.requires_grad_(True)
            with torch.enable_grad():
                out = model(batch)
                torch.autograd.grad(out.float().sum(), batch)
        else:
            with torch.no_grad():
                model(batch)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def auto_batch_size(model: Any, example: torch.Tensor, n_samples: int, *, backward: bool) -> BatchSizeSearch:
    """The batch size for ``--batch-size auto`` (see the module docstring); ``example``: a few
    real inputs, ``n_samples``: the data size (no batch larger than it is tried)."""
    if model.device.type != "cuda":
        size = max(1, min(CPU_DEFAULT, n_samples))
        return BatchSizeSearch(
            size, [], f"{model.device.type}: no out-of-memory signal to search by; default {size}"
        )

    device = model.device

    def trial(size: int) -> None:
        torch.cuda.reset_peak_memory_stats(device)
        trial_batch(model, example, size, backward=backward)

    start = min(AUTO_START, max(1, n_samples))
    found = search(trial, start, on_failure=torch.cuda.empty_cache)
    peak = torch.cuda.max_memory_allocated(device)
    total = torch.cuda.get_device_properties(device).total_memory
    hit_limit = any(not ok for _, ok in found.tried)
    if found.size > 1 and (hit_limit or peak * HEADROOM > total):
        reason = (
            "the search hit the memory limit"
            if hit_limit
            else f"its trial used {peak / total:.0%} of the memory"
        )
        found.how += f"; halved to {found.size // HEADROOM} for the attack's own tensors ({reason})"
        found.size //= HEADROOM
    torch.cuda.empty_cache()
    return found
