"""The per-sample ledger of an audit: who is still robust, who broke whom, and with what.

One :class:`Ledger` holds, for every evaluation sample, per-sample scalars only: whether it is
still robust (alive), the attack that broke it, the norm of that perturbation, the prediction on
its adversarial example and the eps at which it first broke; the examples themselves go to a
temporary file (:class:`ExampleFile`), from which the report's few are read back, so an audit's
memory does not grow with its inputs. The eps loop only ever does two things to it:
:meth:`Ledger.fold` an attack's outcome in (batch by batch; a sample that breaks keeps the first
attack that broke it and its example), and :meth:`Ledger.close_eps` at the end of each eps, which
records that eps's column and carries every broken sample to the next eps (the eps balls are
nested, so an example found at a smaller eps is valid at every larger one). A misclassified
sample starts broken, by no attack. The outputs come from it: :meth:`Ledger.sample_lines` for
``samples.jsonl`` and :meth:`Ledger.examples` for the report's image grid.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from robustness.audit.stages import StageOutcome


class ExampleFile:
    """One float32 row per sample in an anonymous temporary file (gone when closed or at exit):
    the adversarial example of each broken sample, written once and read back for a few."""

    def __init__(self, n: int, sample_shape: Sequence[int]) -> None:
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.row_bytes = 4 * math.prod(self.sample_shape)
        self._file = tempfile.TemporaryFile(prefix="robustness-examples-")
        self._file.truncate(n * self.row_bytes)  # sparse: rows never written take no disk

    def write(self, rows: torch.Tensor, x: torch.Tensor) -> None:
        data = x.detach().cpu().float().contiguous().numpy()
        for i, row in zip(rows.tolist(), data):
            os.pwrite(self._file.fileno(), row.tobytes(), i * self.row_bytes)

    def read(self, rows: torch.Tensor) -> torch.Tensor:
        out = np.empty((len(rows), *self.sample_shape), dtype=np.float32)
        for k, i in enumerate(rows.tolist()):
            raw = os.pread(self._file.fileno(), self.row_bytes, i * self.row_bytes)
            out[k] = np.frombuffer(raw, dtype=np.float32).reshape(self.sample_shape)
        return torch.from_numpy(out)


class Ledger:
    """Per-sample state of one audit over its eps grid (``n_eps`` radii, ascending).

    ``keep_examples``: write the examples (the rank that writes the outputs); the other ranks of a
    distributed audit keep the scalars only.
    """

    CLEAN = "clean"  # broken_by of a sample misclassified before any attack

    def __init__(
        self,
        y: torch.Tensor,
        clean_pred: torch.Tensor,
        n_eps: int,
        sample_shape: Sequence[int],
        *,
        keep_examples: bool = True,
    ) -> None:
        self.y = y
        self.clean_pred = clean_pred
        self.n = int(y.shape[0])
        self.n_eps = n_eps
        self.correct = clean_pred == y
        self._broken = ~self.correct
        self._broken_by: list[str | None] = [None if ok else self.CLEAN for ok in self.correct.tolist()]
        self._examples = ExampleFile(self.n, sample_shape) if keep_examples else None
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
        return ~self._broken

    def standing(self) -> torch.Tensor:
        """Indices (ascending) of the samples still robust: those the next attack runs on."""
        return (~self._broken).nonzero().flatten()

    def n_robust(self) -> int:
        return int((~self._broken).sum())

    def broken_by(self) -> list[str | None]:
        """The attack that broke each sample so far (None: robust, or misclassified unattacked)."""
        return [None if label == self.CLEAN else label for label in self._broken_by]

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
        current eps, keeping their examples; returns how many. ``outcome`` is one batch of a stage
        (it carries its examples, ``x_succ``)."""
        if outcome.idx.numel() == 0:
            return 0
        if outcome.x_succ is None:
            raise ValueError("fold the batches of a stage (Stages.run(..., fold=...)), not its total")
        broken = outcome.broken
        new = self.alive[broken]
        rows = broken[new]
        if rows.numel() == 0:
            return 0
        if self._examples is not None:
            self._examples.write(rows, outcome.x_succ[new])
        self._broken[rows] = True
        for i in rows.tolist():
            self._broken_by[i] = label
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
    def sample_lines(self, ids: Sequence[str], eps: Sequence[float]) -> Iterator[str]:
        """samples.jsonl, a line per sample: its id, label, clean prediction and, at every eps,
        whether it is robust, the attack that broke it, the perturbation's norm (0 for a sample
        robust or misclassified there) and the prediction on its example (the clean prediction
        where no example was found)."""
        from robustness.audit.outputs import sample_line

        labels, clean_pred = self.y.tolist(), self.clean_pred.tolist()
        # [eps][sample] as compact arrays (an element each is quick to read; lists of Python
        # numbers would cost tens of bytes per sample and eps)
        robust = np.stack([column.numpy() for column in self.robust_at]) if self.robust_at else None
        norm = np.stack([column.numpy() for column in self.norm_at]) if self.norm_at else None
        adv_pred = np.stack([column.numpy() for column in self.adv_pred_at]) if self.adv_pred_at else None
        columns = range(len(self.robust_at))
        for i, sid in enumerate(ids):
            ok = [bool(robust[j, i]) for j in columns]  # type: ignore[index]
            by = [self.broken_by_at[j][i] for j in columns]
            norms = [float(norm[j, i]) if not ok[j] and by[j] else 0.0 for j in columns]  # type: ignore[index]
            preds = [int(adv_pred[j, i]) for j in columns]  # type: ignore[index]
            yield sample_line(sid, labels[i], clean_pred[i], eps, ok, by, norms, preds)

    def examples(self, x: torch.Tensor, ids: Sequence[str], eps: Sequence[float]) -> dict[str, np.ndarray]:
        """examples.npz, the report's image grid: up to eight samples (broken ones first, one per
        class), each with its clean input (from ``x``, the audit's inputs by position) and, at
        every eps, its example and the prediction on it ([eps][sample]; the clean input and
        prediction until the sample broke)."""
        from robustness.audit.outputs import pick_examples

        if self._examples is None:
            raise RuntimeError("this ledger keeps no examples (keep_examples=False)")
        chosen = torch.from_numpy(pick_examples(self.y.numpy(), self.first_broken.numpy()))
        first = self.first_broken[chosen]
        x_clean = x[chosen]
        x_best = self._examples.read(chosen)
        x_adv, adv_pred = [], []
        for j in range(self.n_eps):
            broken = (first >= 0) & (first <= j)
            x_adv.append(torch.where(broken.view(-1, *[1] * (x_clean.dim() - 1)), x_best, x_clean).numpy())
            adv_pred.append(torch.where(broken, self.adv_pred[chosen], self.clean_pred[chosen]).numpy())
        return {
            "ids": np.array([ids[i] for i in chosen.tolist()], dtype=str),
            "y": self.y[chosen].numpy(),
            "clean_pred": self.clean_pred[chosen].numpy(),
            "x_clean": x_clean.numpy(),
            "eps": np.asarray(eps, dtype=np.float64),
            "x_adv": np.stack(x_adv).astype(np.float32),
            "adv_pred": np.stack(adv_pred).astype(np.int64),
        }
