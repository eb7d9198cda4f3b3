"""Contrast: every channel pulled towards its own mean, ``(x - mean) * c + mean``."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption


@register_corruption
class Contrast(Corruption):
    name = "contrast"
    title = "Contrast"
    family = "digital"
    cifar = (0.75, 0.5, 0.4, 0.3, 0.15)  # contrast kept
    imagenet = (0.4, 0.3, 0.2, 0.1, 0.05)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        return (x - mean) * c + mean
