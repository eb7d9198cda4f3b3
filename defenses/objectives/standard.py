"""Standard training: cross-entropy on clean inputs (empirical risk minimisation)."""

from __future__ import annotations

import torch
from torch.nn import functional

from defenses.objective import Objective, register_objective


@register_objective
class Standard(Objective):
    name = "standard"
    description = "Cross-entropy on clean inputs; no robustness by design (the baseline)."

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return functional.cross_entropy(logits.float(), y), logits
