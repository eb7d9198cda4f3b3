"""Brightness: the HSV value channel plus ``c``, clipped at 1.

With hue and saturation fixed, the RGB values are proportional to the value (the channel
maximum), so the HSV round trip is a rescaling by ``min(v + c, 1) / v``; a black pixel becomes
grey ``c``. A grey image is its own value channel: ``min(x + c, 1)``.
"""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption


@register_corruption
class Brightness(Corruption):
    name = "brightness"
    title = "Brightness"
    family = "weather"
    cifar = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to the HSV value
    imagenet = (0.1, 0.2, 0.3, 0.4, 0.5)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        value = x.amax(dim=1, keepdim=True)
        brighter = (value + c).clamp(max=1.0)
        return torch.where(value > 0, x * brighter / value.clamp_min(1e-12), brighter.expand_as(x))
