"""The per-sample ledger of an audit: who is still robust, who broke whom, and with what.

One :class:`Ledger` holds, for every evaluation sample: whether it is still robust (alive), the
attack that broke it, the norm of that perturbation, the best adversarial example, the
prediction on it, and the eps at which it first broke. The eps loop only ever does two things
to it: :meth:`Ledger.fold` an attack's outcome in (a sample that breaks keeps the first attack
that broke it), and :meth:`Ledger.close_eps` at the end of each eps, which records that eps's
column and carries every broken sample to the next eps (the eps balls are nested, so an example
found at a smaller eps is valid at every larger one). The outputs come from it:
:meth:`Ledger.sample_rows` for ``samples.jsonl`` and :meth:`Ledger.examples` for the report's
image grid.

The carry itself is :class:`attacks.base.WorstCase`, the one used inside the attacks: a
misclassified sample starts as succeeded (attributed ``clean``, which the ledger reports as no
attack), every other one is attacked until an attack breaks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from attacks.base import WorstCase

if TYPE_CHECKING:
    from robustness.audit.stages import StageOutcome


class Ledger:
    """Per-sample state of one audit over its eps grid (``n_eps`` radii, ascending)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor, n_eps: int) -> None:
        self.x = x
        self.y = y
        self.clean_pred = clean_pred
        self.n = int(x.shape[0])
        self.n_eps = n_eps
        self.correct = clean_pred == y
        self._worst = WorstCase(x, ~self.correct)
        self.adv_pred = clean_pred.clone()
        self.first_broken = torch.full((self.n,), -1, dtype=torch.long)
        self._norm = torch.zeros(self.n)  # the perturbation norm of each broken sample's example
        # One entry per closed eps.
        self.robust_at: list[torch.Tensor] = []
        self.broken_by_at: list[list[str | None]] = []
        self.norm_at: list[torch.Tensor] = []
        self.adv_pred_at: list[torch.Tensor] = []

    # -- reading ----------------------------------------------------------------------------
    @property
    def eps_index(self) -> int:
        """The eps being evaluated: the number of eps closed so far."""
        return len(self.robust_at)

    @property
    def alive(self) -> torch.Tensor:
        """Mask of the samples correctly classified and unbroken so far (a copy)."""
        return ~self._worst.success

    def standing(self) -> torch.Tensor:
        """Indices (ascending) of the samples still robust: those the next attack runs on."""
        return self._worst.standing()

    def n_robust(self) -> int:
        return int(self.alive.sum())

    def broken_by(self) -> list[str | None]:
        """The attack that broke each sample so far (None: robust, or misclassified unattacked)."""
        return [None if label == WorstCase.CLEAN else label for label in self._worst.broken_by]

    def per_class_accuracy(self, num_classes: int) -> dict[str, float | None]:
        """Robust accuracy of each class so far (None for a class absent from the data)."""
        alive = self.alive
        out: dict[str, float | None] = {}
        for c in range(num_classes):
            members = self.y == c
            n = int(members.sum())
            out[str(c)] = int((alive & members).sum()) / n if n else None
        return out

    # -- the eps loop -----------------------------------------------------------------------
    def fold(self, outcome: StageOutcome, label: str) -> int:
        """Mark the samples ``outcome`` broke that were still robust as broken by ``label`` at the
        current eps; returns how many."""
        if outcome.idx.numel() == 0:
            return 0
        broken = outcome.broken
        new = self.alive[broken]
        rows = broken[new]
        if rows.numel() == 0:
            return 0
        self._worst.propose(rows, outcome.x_succ[new])
        success = self._worst.success.clone()
        success[rows] = True
        found_by: list[str | None] = [None] * self.n
        for i in rows.tolist():
            found_by[i] = label
        self._worst.settle(success, found_by)
        self.adv_pred[rows] = outcome.adv_pred[outcome.success][new]
        self.first_broken[rows] = self.eps_index
        self._norm[rows] = outcome.pnorm[outcome.success][new]
        return int(rows.numel())

    def close_eps(self) -> None:
        """Record the current eps's column; the broken samples carry over to the next eps."""
        if self.eps_index >= self.n_eps:
            raise RuntimeError("every eps of the grid is already closed")
        self.robust_at.append(self.alive)
        self.broken_by_at.append(self.broken_by())
        self.norm_at.append(self._norm.clone())
        self.adv_pred_at.append(self.adv_pred.clone())

    # -- the outputs ------------------------------------------------------------------------
    def sample_rows(self, ids: list[str], eps: list[float]) -> str:
        """samples.jsonl: per sample its id, label, clean prediction and, at every eps, whether it
        is robust, the attack that broke it, the perturbation's norm and the prediction on its
        example (the clean prediction where no example was found)."""
        from robustness.audit.outputs import samples_lines

        robust, broken_by, norms = self.sample_columns()
        adv_pred = [column.tolist() for column in self.adv_pred_at]
        return samples_lines(
            ids, self.y.tolist(), self.clean_pred.tolist(), eps, robust, broken_by, norms, adv_pred
        )

    def sample_columns(self) -> tuple[list[list[bool]], list[list[str | None]], list[list[float]]]:
        """``robust``, ``broken_by`` and ``perturbation_norm`` as [eps][sample]; the norm is 0 for
        a sample robust or misclassified at that eps."""
        robust = [mask.tolist() for mask in self.robust_at]
        norms = [
            [float(column[i]) if not robust[j][i] and self.broken_by_at[j][i] else 0.0 for i in range(self.n)]
            for j, column in enumerate(self.norm_at)
        ]
        return robust, self.broken_by_at, norms

    def examples(self, ids: list[str], eps: list[float]) -> dict[str, np.ndarray]:
        """examples.npz, the report's image grid: up to eight samples (broken ones first, one per
        class), each with its clean input and, at every eps, its example and the prediction on it
        ([eps][sample]; the clean input and prediction until the sample broke)."""
        from robustness.audit.outputs import pick_examples

        chosen = torch.from_numpy(pick_examples(self.y.numpy(), self.first_broken.numpy()))
        first = self.first_broken[chosen]
        x_adv, adv_pred = [], []
        for j in range(self.n_eps):
            broken = (first >= 0) & (first <= j)
            x_adv.append(
                torch.where(
                    broken.view(-1, *[1] * (self.x.dim() - 1)), self._worst.x_best[chosen], self.x[chosen]
                ).numpy()
            )
            adv_pred.append(torch.where(broken, self.adv_pred[chosen], self.clean_pred[chosen]).numpy())
        return {
            "ids": np.array([ids[i] for i in chosen.tolist()], dtype=str),
            "y": self.y[chosen].numpy(),
            "clean_pred": self.clean_pred[chosen].numpy(),
            "x_clean": self.x[chosen].numpy(),
            "eps": np.asarray(eps, dtype=np.float64),
            "x_adv": np.stack(x_adv).astype(np.float32),
            "adv_pred": np.stack(adv_pred).astype(np.int64),
        }
