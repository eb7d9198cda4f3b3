"""Motion blur: a one-sided Gaussian streak (radius, sigma) at a random angle in [-45, 45] degrees."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import motion_blur


@register_corruption
class MotionBlur(Corruption):
    name = "motion_blur"
    title = "Motion blur"
    family = "blur"
    cifar = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # radius, sigma (ImageMagick's)
    imagenet = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))

    def apply(self, x: torch.Tensor, c: tuple[float, float], setting: Setting) -> torch.Tensor:
        angle = setting.uniform(-45.0, 45.0, x.shape[0], device=x.device)
        return motion_blur(x, setting.pixels(c[0]), setting.pixels(c[1]), angle)
