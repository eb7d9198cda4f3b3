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
    from robustness.progress import Progress


@dataclass
class StageOutcome:
    """One attack at one eps over a set of samples (``idx``), all batches together."""

    idx: torch.Tensor
    success: torch.Tensor
    adv_pred: torch.Tensor
    pnorm: torch.Tensor
    x_succ: torch.Tensor  # adversarial examples of idx[success], in that order
    n_forward: int
    n_backward: int
    n_queries: int
    time_s: float
    resumed: bool
    # The counts behind the indicators of attack failure over all batches (attacks.trace).
    indicators: Counts = field(default_factory=dict)

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
    """Runs attack stages on the audit's model and data, with its checkpoint and progress display."""

    def __init__(
        self,
        *,
        model: Any,
        x: torch.Tensor,
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
        self.n = int(x.shape[0])
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
    ) -> StageOutcome:
        """Run (or load from the checkpoint) ``spec`` on the samples ``idx`` at ``eps``.

        ``key`` names the stage in the checkpoint and in the batch seeds; ``label`` in the
        progress display; ``alive`` is the mask whose count the display shows as robust.
        """
        idx = idx.to(torch.long).sort().values
        bs = self.batch_size
        batches = [idx[s : s + bs] for s in range(0, idx.numel(), bs)]
        n_alive = int(alive.sum())
        self.progress.stage_start(eps, label, idx.numel(), len(batches), n_alive, self.n)
        resumed = bool(batches)
        records: dict[int, dict[str, np.ndarray]] = {}
        ran = False
        live_broken = 0
        for b, bidx in enumerate(batches):
            if not self.dist.owns(b):
                continue  # another rank's batch
            rec = self.checkpoint.load_batch(eps_index, key, b, sample_shape=tuple(self.x.shape[1:]))
            if rec is not None and not np.array_equal(rec["idx"], bidx.numpy()):
                rec = None  # out of step with this run (cannot happen with a deterministic model): redo
            if rec is None:
                ran = True
                rec = self._attack_batch(spec, bidx, eps, derive_seed(self.seed, eps_index, key, b))
                self.checkpoint.save_batch(eps_index, key, b, rec)
            records[b] = rec
            if not self.dist.enabled:
                live_broken += int((torch.from_numpy(rec["success"]).bool() & alive[bidx]).sum())
                self.progress.batch_done(n_alive - live_broken)
        if self.dist.enabled:
            # Everyone's batches, so that every rank folds the same outcomes (and picks the same
            # samples for the next stage).
            gathered = self.dist.all_gather_object((records, ran))
            records = {b: r for part, _ in gathered for b, r in part.items()}
            ran = any(r for _, r in gathered)
        resumed = resumed and not ran
        succ, preds, norms, xs = [], [], [], []
        cost = np.zeros(3, dtype=np.int64)
        t_total = 0.0
        broken_so_far = 0
        indicators: Counts = {}
        for b, bidx in enumerate(batches):
            rec = records[b]
            merge_counts(indicators, batch_indicators(rec))
            s = torch.from_numpy(rec["success"]).bool()
            succ.append(s)
            preds.append(torch.from_numpy(rec["adv_pred"]).long())
            norms.append(torch.from_numpy(rec["pnorm"]).float())
            xs.append(torch.from_numpy(rec["x_adv"]).float())
            cost += rec["cost"].astype(np.int64)
            t_total += float(rec["time_s"])
            broken_so_far += int((s & alive[bidx]).sum())
            if self.dist.enabled:
                self.progress.batch_done(n_alive - broken_so_far)
        out = StageOutcome(
            idx=idx,
            success=torch.cat(succ) if succ else torch.zeros(0, dtype=torch.bool),
            adv_pred=torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long),
            pnorm=torch.cat(norms) if norms else torch.zeros(0),
            x_succ=torch.cat(xs) if xs else self.x[:0].clone(),
            n_forward=int(cost[0]),
            n_backward=int(cost[1]),
            n_queries=int(cost[2]),
            time_s=t_total,
            resumed=resumed,
            indicators=indicators,
        )
        n_robust = n_alive - broken_so_far if show_robust else None
        self.progress.stage_done(
            eps, label, int(idx.numel()), out.n_broken, n_robust, self.n, t_total, resumed
        )
        return out

    def _attack_batch(
        self, spec: AttackSpec, bidx: torch.Tensor, eps: float, seed: int
    ) -> dict[str, np.ndarray]:
        """One batch through the attack contract: the arrays the checkpoint stores
        (:data:`robustness.checkpoint.BATCH_ARRAYS`)."""
        attack = self.instance(spec)
        model = self.model
        t0 = time.perf_counter()
        xb, yb = self.x[bidx], self.y[bidx]
        if model.device.type == "cuda":
            # Page-locked host memory: a direct DMA copy that does not block the host.
            xb = xb.pin_memory().to(model.device, non_blocking=True)
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
