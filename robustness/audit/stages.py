"""One attack over a set of samples, batch by batch, checkpointed: a *stage* of the audit.

Every attack the audit runs (the configured ones and the sanity checks' own) goes through
:meth:`Stages.run`: the samples are cut into batches, each batch is attacked through the public
contract (``get_attack(name, **params)(model, x, y, eps=..., norm=..., seed=...)``) with a seed
derived from (seed, eps index, stage key, batch index) and saved to the checkpoint, so an
interrupted audit resumes where it stopped and ends with the same numbers. Under ``torchrun``
each rank runs its share of the batches and every rank gathers every outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attacks.trace import Counts, merge_counts
from robustness.checkpoint import batch_indicators, derive_seed, indicators_array

if TYPE_CHECKING:
    from robustness.checkpoint import Checkpoint
    from robustness.config import AttackSpec
    from robustness.core.distributed import DistContext
    from robustness.core.rows import SampleRows
    from robustness.progress import Progress


@dataclass
class StageOutcome:
    """One attack at one eps over a set of samples (``idx``): one batch of it, or all together."""

    idx: torch.Tensor
    success: torch.Tensor
    adv_pred: torch.Tensor
    pnorm: torch.Tensor
    # Adversarial examples of idx[success], in that order: a batch's, for the ledger's fold. A
    # stage's total leaves them out (None), so that a stage never holds the examples of all its
    # samples at once.
    x_succ: torch.Tensor | None
    n_forward: int
    n_backward: int
    n_queries: int
    time_s: float
    resumed: bool
    # The counts behind the indicators of attack failure over all batches (attacks.trace).
    indicators: Counts = field(default_factory=dict)
    # Samples the fold marked broken that were still robust (Stages.run(..., fold=...)).
    n_folded: int = 0

    @property
    def broken(self) -> torch.Tensor:
        return self.idx[self.success]

    @property
    def n_broken(self) -> int:
        return int(self.success.sum())

    def cost(self) -> dict[str, Any]:
        return {
            "time_s": round(self.time_s, 4),
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_queries": self.n_queries,
            "n_attacked": int(self.idx.numel()),
            "n_broken": self.n_broken,
        }


class Stages:
    """Runs attack stages on the audit's model and inputs, with its checkpoint and progress display.

    ``x`` is the audit's inputs by position (:class:`robustness.core.rows.SampleRows`): each stage
    reads the batches it attacks from it and nothing else, so that a stage holds only the batches
    in flight.
    """

    def __init__(
        self,
        *,
        model: Any,
        x: SampleRows,
        y: torch.Tensor,
        norm: str,
        batch_size: int,
        seed: int,
        checkpoint: Checkpoint,
        dist: DistContext,
        progress: Progress,
    ) -> None:
        self.model = model
        self.x = x
        self.y = y
        self.n = int(y.shape[0])
        self.norm = norm
        self.batch_size = batch_size
        self.seed = seed
        self.checkpoint = checkpoint
        self.dist = dist
        self.progress = progress
        # Predictions whose majority judges each example (attacks.base.majority_vote): the
        # runner raises it for a model whose forward pass is randomized.
        self.votes = 1
        self._instances: dict[tuple[str, str], Any] = {}

    def instance(self, spec: AttackSpec) -> Any:
        """The attack object of ``spec`` (one per name and parameters)."""
        from attacks.registry import get_attack

        key = (spec.name, repr(sorted(spec.params.items())))
        if key not in self._instances:
            self._instances[key] = get_attack(spec.name, **spec.params)
        return self._instances[key]

    def run(
        self,
        eps_index: int,
        eps: float,
        key: str,
        label: str,
        spec: AttackSpec,
        idx: torch.Tensor,
        alive: torch.Tensor,
        show_robust: bool = True,
        fold: Callable[[StageOutcome], int] | None = None,
    ) -> StageOutcome:
        """Run (or load from the checkpoint) ``spec`` on the samples ``idx`` at ``eps``.

        ``key`` names the stage in the checkpoint and in the batch seeds; ``label`` in the
        progress display; ``alive`` is the mask whose count the display shows as robust.
        ``fold`` takes each batch's outcome, in batch order, with its examples (the ledger's
        fold); the returned total has the scalars of all batches and no examples.

        The batches go round in rounds of one per rank: each rank attacks (or loads) its batch of
        the round, every rank gathers the round's outcomes and folds them in the same order, so
        that no rank ever holds more than a round's examples.
        """
        idx = idx.to(torch.long).sort().values
        bs = self.batch_size
        batches = [idx[s : s + bs] for s in range(0, idx.numel(), bs)]
        n_alive = int(alive.sum())
        self.progress.stage_start(eps, label, idx.numel(), len(batches), n_alive, self.n)
        mine = [b for b in range(len(batches)) if self.dist.owns(b)]
        # The batches with no record are read from the data in one pass; a record that fails to
        # load (torn) has its batch read on its own.
        todo = [b for b in mine if not self.checkpoint.batch_path(eps_index, key, b).exists()]
        fresh = self.x.batches(idx, bs, numbers=todo, pin_memory=self.model.device.type == "cuda")
        unread = set(todo)
        world = self.dist.world_size
        ran = False
        parts: list[StageOutcome] = []
        indicators: Counts = {}
        cost = np.zeros(3, dtype=np.int64)
        t_total = 0.0
        broken_so_far = 0
        folded = 0
        for start in range(0, len(batches), world):
            own = start + self.dist.rank
            rec = None
            if own < len(batches):
                rec = None if own in unread else self._saved(eps_index, key, own, batches[own])
                if rec is None:
                    xb = self._next_fresh(fresh, own) if own in unread else self.x[batches[own]]
                    seed = derive_seed(self.seed, eps_index, key, own)
                    rec = self._attack_batch(spec, batches[own], xb, eps, seed)
                    self.checkpoint.save_batch(eps_index, key, own, rec)
                    ran = True
            # Everyone's batch of this round, so that every rank folds the same outcomes (and
            # picks the same samples for the next stage).
            gathered = self.dist.all_gather_object((rec, ran)) if self.dist.enabled else [(rec, ran)]
            ran = any(r for _, r in gathered)
            for record, _ in gathered:
                if record is None:
                    continue
                part = _outcome(record)
                merge_counts(indicators, batch_indicators(record))
                cost += record["cost"].astype(np.int64)
                t_total += float(record["time_s"])
                broken_so_far += int((part.success & alive[part.idx]).sum())
                if fold is not None:
                    folded += fold(part)
                part.x_succ = None  # the ledger has them; the total keeps the scalars
                parts.append(part)
                self.progress.batch_done(n_alive - broken_so_far)
        resumed = bool(batches) and not ran
        out = StageOutcome(
            idx=idx,
            success=torch.cat([p.success for p in parts]) if parts else torch.zeros(0, dtype=torch.bool),
            adv_pred=torch.cat([p.adv_pred for p in parts]) if parts else torch.zeros(0, dtype=torch.long),
            pnorm=torch.cat([p.pnorm for p in parts]) if parts else torch.zeros(0),
            x_succ=None,
            n_forward=int(cost[0]),
            n_backward=int(cost[1]),
            n_queries=int(cost[2]),
            time_s=t_total,
            resumed=resumed,
            indicators=indicators,
            n_folded=folded,
        )
        n_robust = n_alive - broken_so_far if show_robust else None
        self.progress.stage_done(
            eps, label, int(idx.numel()), out.n_broken, n_robust, self.n, t_total, resumed
        )
        return out

    def _saved(self, eps_index: int, key: str, b: int, bidx: torch.Tensor) -> dict[str, np.ndarray] | None:
        """Batch ``b``'s checkpoint record, or None: missing, torn, or out of step with this run
        (other samples: cannot happen with a deterministic model), so it is attacked again."""
        rec = self.checkpoint.load_batch(eps_index, key, b, sample_shape=self.x.sample_shape)
        return rec if rec is not None and np.array_equal(rec["idx"], bidx.numpy()) else None

    @staticmethod
    def _next_fresh(fresh: Iterator[tuple[int, torch.Tensor]], b: int) -> torch.Tensor:
        """Batch ``b``'s inputs from the stage's one pass over the batches it must attack."""
        number, xb = next(fresh)
        if number != b:  # the rows hand out the batches asked for, in order
            raise RuntimeError(f"read batch {number} where batch {b} was due")
        return xb

    def _attack_batch(
        self, spec: AttackSpec, bidx: torch.Tensor, xb: torch.Tensor, eps: float, seed: int
    ) -> dict[str, np.ndarray]:
        """One batch (the samples ``bidx``, inputs ``xb``) through the attack contract: the arrays
        the checkpoint stores (:data:`robustness.checkpoint.BATCH_ARRAYS`)."""
        attack = self.instance(spec)
        model = self.model
        t0 = time.perf_counter()
        yb = self.y[bidx]
        if model.device.type == "cuda":
            # Page-locked host memory: a direct DMA copy that does not block the host.
            xb = (xb if xb.is_pinned() else xb.pin_memory()).to(model.device, non_blocking=True)
            yb = yb.pin_memory().to(model.device, non_blocking=True)
        res = attack(
            model,
            xb,
            yb,
            eps=float(eps),
            norm=self.norm,
            seed=seed,
            batch_size=self.batch_size,
            votes=self.votes,
        )
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        elapsed = time.perf_counter() - t0
        success = res.success.detach().cpu().bool()
        x_adv = res.x_adv.detach().cpu().float()
        return {
            "idx": bidx.numpy().astype(np.int64),
            "success": success.numpy(),
            "adv_pred": res.adv_pred.detach().cpu().long().numpy(),
            "pnorm": res.perturbation_norm.detach().cpu().float().numpy(),
            "x_adv": x_adv[success].numpy(),
            "cost": np.array([res.n_forward, res.n_backward, res.n_queries], dtype=np.int64),
            "time_s": np.array(elapsed, dtype=np.float64),
            "indicators": indicators_array(res.indicators),
        }


def _outcome(record: dict[str, np.ndarray]) -> StageOutcome:
    """One batch's outcome from its checkpoint record, with its examples."""
    return StageOutcome(
        idx=torch.from_numpy(record["idx"]).long(),
        success=torch.from_numpy(record["success"]).bool(),
        adv_pred=torch.from_numpy(record["adv_pred"]).long(),
        pnorm=torch.from_numpy(record["pnorm"]).float(),
        x_succ=torch.from_numpy(record["x_adv"]).float(),
        n_forward=int(record["cost"][0]),
        n_backward=int(record["cost"][1]),
        n_queries=int(record["cost"][2]),
        time_s=float(record["time_s"]),
        resumed=False,
    )
