"""How many CPU threads a run uses for the model's own work (torch's intra-op pool).

Why not torch's default (one thread per core): a small model's batch pass is too short for
intra-op parallelism to pay, and two such runs on a shared 2-core CI runner then spin OpenMP
threads against each other (measured: 26 minutes beside a second audit for a run that takes
2 min 38 s alone). So ``auto`` times one forward+backward pass of a real batch on one thread
and only uses more threads for a model whose pass is long enough to gain from them, never
more than the cores this process may really use (CPU affinity and a cgroup CPU quota).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from robustness.core.errors import ConfigError

# A batch pass shorter than this (one thread) gains little from more threads and is where
# OpenMP's spin-waiting costs most when the cores are shared.
SMALL_PASS_SECONDS = 0.02
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def idle_cores(cores: int | None = None) -> int:
    """Cores not already kept busy by other processes, judged from the 1-minute load average.

    The average lags by about a minute, so two runs started together do not see each other;
    the small-pass rule in :func:`choose_threads` is what keeps those from oversubscribing.
    """
    cores = available_cores() if cores is None else cores
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return cores
    return max(1, min(cores, cores - int(load + 0.5)))


MAX_THREADS = 1024


def check_threads(value: int | str | None, *, field: str = "threads") -> int | str:
    """Validate a ``threads`` setting: ``auto`` (or None) or an integer from 1 to :data:`MAX_THREADS`."""
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ConfigError(
            f"threads must be 'auto' or an integer from 1 to {MAX_THREADS}, got {value!r}",
            field=field,
            fix="Use auto (the default: chosen from the model's cost and the free cores) or e.g. 1.",
        )
    return int(value)


def choose_threads(setting: int | str | None, probe: Callable[[], object] | None = None) -> int:
    """The thread count for ``setting``: an explicit count as given, else decided by ``probe``.

    ``probe`` runs one representative batch pass (forward and input-gradient backward). It is
    timed on one thread after a warm-up; a pass under :data:`SMALL_PASS_SECONDS` keeps one
    thread, a longer one gets every core that is not busy with other work.
    """
    import torch

    setting = check_threads(setting)
    if setting != "auto":
        return int(setting)
    cores = available_cores()
    if cores == 1 or probe is None:
        return 1 if probe is not None else min(cores, torch.get_num_threads())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        probe()  # warm-up: first-call allocations and kernel selection
        t0 = time.perf_counter()
        probe()
        elapsed = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)
    if elapsed < SMALL_PASS_SECONDS:
        return 1
    return idle_cores(cores)


def apply_threads(setting: int | str | None, probe: Callable[[], object] | None = None) -> int:
    """Choose the thread count (see :func:`choose_threads`), set it for torch, and return it."""
    import torch

    n = choose_threads(setting, probe)
    torch.set_num_threads(n)
    return n


def batch_pass_probe(model: object, x: object, batch_size: int) -> Callable[[], object]:
    """A probe for :func:`choose_threads`: one forward + input-gradient backward on a batch of ``x``."""
    import torch

    def probe() -> object:
        batch = x[:batch_size].detach().to(model.device).clone().requires_grad_(True)  # type: ignore[attr-defined]
        with model.evaluating():  # type: ignore[attr-defined]
            out = model(batch)  # type: ignore[operator]
            torch.autograd.grad(out.float().sum(), batch)
        return None

    return probe
