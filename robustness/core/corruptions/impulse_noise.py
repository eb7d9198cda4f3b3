"""Impulse (salt-and-pepper) noise: a share ``c`` of the values, drawn per channel, set to 0 or 1
with equal odds (skimage's ``random_noise(mode="s&p")``)."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption


@register_corruption
class ImpulseNoise(Corruption):
    name = "impulse_noise"
    title = "Impulse noise"
    family = "noise"
    cifar = (0.01, 0.02, 0.03, 0.05, 0.07)  # share of values replaced
    imagenet = (0.03, 0.06, 0.09, 0.17, 0.27)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        flipped = setting.rand(*x.shape, device=x.device) < c
        salt = (setting.rand(*x.shape, device=x.device) < 0.5).to(x.dtype)
        return torch.where(flipped, salt, x)
