"""Fog: a diamond-square plasma fractal added to the image, rescaled to keep its maximum."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import CIFAR_MAX_SIDE, Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import next_power_of_two, plasma_fractal


@register_corruption
class Fog(Corruption):
    name = "fog"
    title = "Fog"
    family = "weather"
    cifar = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # strength, decay of the fractal
    imagenet = ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))

    def apply(self, x: torch.Tensor, c: tuple[float, float], setting: Setting) -> torch.Tensor:
        n, _, h, w = x.shape
        # CIFAR-10-C draws a 32x32 map (a small image sees its corner); ImageNet-C one as large as the image.
        side = CIFAR_MAX_SIDE if setting.constants == "cifar10-c" else max(h, w)
        fractal = plasma_fractal(n, next_power_of_two(side), c[1], setting.generator, x.device)
        peak = x.amax(dim=(1, 2, 3), keepdim=True)
        x = x + c[0] * fractal[:, None, :h, :w].to(x.dtype)
        return x * peak / (peak + c[0])
