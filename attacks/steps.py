"""Steepest-ascent directions per norm, shared by the gradient attacks."""

from __future__ import annotations

import torch

from robustness.core.threat import lp_norm


def _shape(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def ascent_direction(
    grad: torch.Tensor,
    norm: str,
    x: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    sparsity: float = 0.99,
) -> torch.Tensor:
    """Unit-norm (in ``norm``) direction of steepest ascent for a gradient.

    linf: sign; l2: normalised gradient; l1: the sparse step of Tramer & Boneh (2019),
    the signs of the gradient's top ``1 - sparsity`` share of coordinates, skipping
    coordinates pinned at a bound in the direction they would move.
    """
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        return grad / _shape(lp_norm(grad, "l2") + 1e-12, grad)
    g = grad
    if x is not None and bounds is not None:
        blocked = ((x <= bounds[0]) & (g < 0)) | ((x >= bounds[1]) & (g > 0))
        g = g.masked_fill(blocked, 0.0)
    flat = g.abs().flatten(1)
    k = max(1, int(round((1 - sparsity) * flat.shape[1])))
    thresh = flat.topk(k, dim=1).values[:, -1:]
    mask = (flat >= thresh) & (flat > 0)
    step = g.sign().flatten(1) * mask
    count = mask.sum(dim=1, keepdim=True).clamp_min(1)
    return (step / count).view_as(grad)
