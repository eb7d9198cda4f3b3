"""Per-sample attack losses (higher = more adversarial). Shared by every gradient attack."""

from __future__ import annotations

import torch
from torch.nn.functional import cross_entropy

from robustness.core.errors import AttackError


def ce_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the true class (untargeted) or minus that of the target (targeted)."""
    if targets is not None:
        return -cross_entropy(logits, targets, reduction="none")
    return cross_entropy(logits, y, reduction="none")


def margin_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Carlini-Wagner margin: max other logit minus the true logit (or target minus best other)."""
    if targets is not None:
        z_t = logits.gather(1, targets[:, None]).squeeze(1)
        other = logits.scatter(1, targets[:, None], float("-inf")).amax(dim=1)
        return z_t - other
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return other - z_y


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), untargeted or targeted; scale invariant."""
    z, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if targets is None:
        other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
        return -(z_y - other) / (z[:, 0] - z[:, 2] + 1e-12)
    z_t = logits.gather(1, targets[:, None]).squeeze(1)
    return -(z_y - z_t) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


LOSSES = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


def get_loss(name: str):
    if name not in LOSSES:
        raise AttackError(f"unknown loss {name!r}", field="loss", fix=f"Use one of: {', '.join(LOSSES)}.")
    return LOSSES[name]
