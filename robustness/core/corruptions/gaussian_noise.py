"""Gaussian noise: every pixel value plus ``N(0, c^2)``."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption


@register_corruption
class GaussianNoise(Corruption):
    name = "gaussian_noise"
    title = "Gaussian noise"
    family = "noise"
    cifar = (0.04, 0.06, 0.08, 0.09, 0.10)  # standard deviation
    imagenet = (0.08, 0.12, 0.18, 0.26, 0.38)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        return x + c * setting.randn(*x.shape, device=x.device)
