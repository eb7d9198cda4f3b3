"""Running one command on several processes (``torchrun``): who does what, and how results meet.

``torchrun`` starts one process per GPU (or per CPU share) and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_from_env`
reads them: with ``WORLD_SIZE`` unset or 1 it returns a single-process context and sets
nothing up (no process group, no thread or device change), so the ordinary path is untouched.
Otherwise it joins the process group (nccl on CUDA, gloo on CPU), binds the process to
``cuda:LOCAL_RANK`` on CUDA, and on CPU gives each process an equal share of the cores.

Work is split into units that are already deterministic on their own (an attack batch with its
own seed), never by padding: rank ``r`` takes units ``r, r + world, ...`` and every rank then
gathers everyone's outcomes, so all ranks hold the same numbers as a single process would. A
repeated sample (``DistributedSampler`` pads by repeating) would skew robust accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch

from robustness.core.errors import RobustnessError, UsageError

T = TypeVar("T")
# Exit codes that mean "the command ran and judged" (pass, gate failed, unreliable); anything
# else (2 usage/internal, 130 interrupted) reports a failure that must not be hidden.
VERDICT_CODES = (0, 1, 3)
TIMEOUT_ENV = "ROBUSTNESS_DIST_TIMEOUT_S"


@dataclass
class DistContext:
    """This process's place among the ranks of one run (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    device: torch.device | None = None  # cuda:LOCAL_RANK under nccl; None: the model's own choice

    @property
    def enabled(self) -> bool:
        """True when there are several ranks (a process group is set up)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes outputs."""
        return self.rank == 0

    # -- splitting work ------------------------------------------------------------------
    def shard(self, n: int) -> list[int]:
        """This rank's share of ``range(n)``: ``rank, rank + world, ...``; no padding, no repeats."""
        return list(range(self.rank, int(n), self.world_size))

    def owns(self, unit: int) -> bool:
        """Whether work unit ``unit`` (a batch index) is this rank's."""
        return int(unit) % self.world_size == self.rank

    # -- communication -------------------------------------------------------------------
    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (picklable objects; tensors are sent as they are)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def sum_counts(self, counts: Sequence[int]) -> list[int]:
        """Element-wise sum over ranks of integer counts, exactly (int64, never floats)."""
        values = [int(c) for c in counts]
        if not self.enabled or not values:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [int(v) for v in t.cpu().tolist()]

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks in float64 (losses for a log line, not counts)."""
        vals = [float(v) for v in values]
        if not self.enabled or not vals:
            return vals
        import torch.distributed as dist

        t = torch.tensor(vals, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu().tolist()]

    def main_only(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only; every rank gets its result, or raises the same user error.

        For work with side effects (claiming an output folder, reading a checkpoint) that one
        rank must do: the other ranks wait instead of racing, and a :class:`RobustnessError`
        on rank 0 is raised everywhere, so no rank is left waiting in a collective.
        """
        if not self.enabled:
            return fn()
        outcome: tuple[str, Any]
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except RobustnessError as exc:
                outcome = ("error", exc)
            except KeyboardInterrupt:
                raise  # Ctrl-C reaches every rank: none is left waiting for this one
            except BaseException as exc:  # noqa: BLE001 - other ranks must not hang on rank 0's bug
                # (or on sys.exit() in the user's model code, which the CLI reports as exit 2)
                outcome = ("crash", f"{type(exc).__name__}: {exc}")
                self.broadcast_object(outcome)
                raise
        else:
            outcome = ("", None)
        kind, value = self.broadcast_object(outcome)
        if kind == "error":
            raise value
        if kind == "crash":
            raise RuntimeError(f"rank 0 failed: {value}")
        return value

    def agree_exit_code(self, code: int) -> int:
        """The one exit code every rank returns.

        Ranks normally agree. If they do not, a failure on any rank (a code that is not a
        verdict: 2, 130, ...) wins over a verdict, so an error is never reported as a pass;
        otherwise rank 0's verdict (it judged the gathered results) is the answer.
        """
        if not self.enabled:
            return int(code)
        codes = [int(c) for c in self.all_gather_object(int(code))]
        if len(set(codes)) == 1:
            return codes[0]
        failures = [c for c in codes if c not in VERDICT_CODES]
        return max(failures) if failures else codes[0]

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if self.enabled:
            import gc

            import torch.distributed as dist

            if dist.is_initialized():
                # Objects that hold the group (a DDP reducer in a reference cycle) must go before
                # it: destroyed at interpreter exit instead, they can abort the process.
                gc.collect()
                dist.destroy_process_group()

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" and self.device is not None else torch.device("cpu")

    def describe(self) -> dict[str, Any]:
        """What the results record about the run's processes."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "local_world_size": self.local_world_size,
        }


SINGLE = DistContext()
_current: DistContext | None = None


def current() -> DistContext:
    """The context :func:`init_from_env` set up in this process, else the single-process one."""
    return _current if _current is not None else SINGLE


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise UsageError(
            f"the environment variable {name}={raw!r} is not an integer",
            field=name,
            fix="Launch with torchrun (python -m torch.distributed.run), which sets it, or unset it.",
        ) from None


def init_from_env(device: str | torch.device | None = "auto") -> DistContext:
    """Join the ``torchrun`` process group described by the environment, once per process.

    ``device`` is the device the command will use (``auto``, ``cpu``, ``cuda``, ``cuda:N``):
    CUDA picks nccl and binds this process to ``cuda:LOCAL_RANK`` (so ``auto``/``cuda`` mean
    that GPU); anything else picks gloo and sets the torch threads to this process's share of
    the cores. With ``WORLD_SIZE`` unset or 1 nothing is set up.
    """
    global _current
    if _current is not None:
        return _current
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise UsageError(
            f"WORLD_SIZE={world} but {' and '.join(missing)} not set",
            field=missing[0],
            fix="Launch with torchrun (python -m torch.distributed.run --nproc_per_node=N ...), which sets "
            "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.",
        )
    import torch.distributed as dist

    want = str(device or "auto")
    use_cuda = torch.cuda.is_available() and not want.startswith(("cpu", "mps"))
    dev: torch.device | None = None
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} CUDA device(s)",
                field="--nproc_per_node",
                fix="Start at most one process per GPU on each node.",
            )
        if want.startswith("cuda:") and world > 1:
            raise UsageError(
                f"--device {want} would put every rank on the same GPU",
                field="--device",
                fix="Use --device cuda (or auto): each rank then uses the GPU of its LOCAL_RANK.",
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # torchrun sets OMP_NUM_THREADS=1; an equal share of the cores uses the machine without
        # oversubscribing it (several processes each running all-core kernels thrash).
        torch.set_num_threads(max(1, cores // max(1, local_world)))
    timeout = timedelta(seconds=_env_int(TIMEOUT_ENV, 1800))
    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world, "timeout": timeout}
    if dev is not None:
        kwargs["device_id"] = dev
    if not dist.is_initialized():
        dist.init_process_group(**kwargs)
    _current = DistContext(rank, world, local_rank, local_world, backend, dev)
    return _current


def finish(code: int) -> int:
    """End of a command: the exit code every rank agrees on; leaves the process group."""
    global _current
    ctx = _current
    if ctx is None:
        return int(code)
    try:
        return ctx.agree_exit_code(code)
    finally:
        ctx.close()
        _current = None
