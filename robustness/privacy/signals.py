"""What a membership attack observes of a model on one sample: its output on the true label.

Every attack here is black-box: it needs only the model's logits on the audited samples. From
them, :class:`Signals` derives the three observations the attacks use:

- ``loss``: cross-entropy on the true label (Yeom et al. 2018);
- ``probability``: softmax probability of the true label (RMIA, Zarifzadeh et al. 2024);
- ``confidence``: the logit-scaled confidence ``log(p / (1 - p))``, computed stably as
  ``z_y - logsumexp_{j != y} z_j`` (LiRA, Carlini et al. 2022: it is close to Gaussian across
  models, where ``p`` itself is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn import functional

if TYPE_CHECKING:
    from robustness.core.model import ModelUnderTest


@dataclass(frozen=True)
class Signals:
    """One model's observations on ``n`` samples (CPU float64 tensors of length ``n``)."""

    loss: torch.Tensor
    probability: torch.Tensor
    confidence: torch.Tensor
    correct: torch.Tensor  # bool: the model predicts the true label

    @classmethod
    def from_logits(cls, logits: torch.Tensor, y: torch.Tensor) -> Signals:
        logits = logits.double()
        y = y.to(logits.device).long()
        log_p = functional.log_softmax(logits, dim=1)
        true_log_p = log_p.gather(1, y[:, None])[:, 0]
        others = logits.scatter(1, y[:, None], float("-inf"))
        confidence = logits.gather(1, y[:, None])[:, 0] - torch.logsumexp(others, dim=1)
        return cls(
            loss=(-true_log_p).cpu(),
            probability=true_log_p.exp().cpu(),
            confidence=confidence.cpu(),
            correct=(logits.argmax(dim=1) == y).cpu(),
        )


def observe(model: ModelUnderTest, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> Signals:
    """The model's signals on ``(x, y)``: one batched, gradient-free pass on the model's device."""
    return Signals.from_logits(model.logits(x, batch_size), y)
