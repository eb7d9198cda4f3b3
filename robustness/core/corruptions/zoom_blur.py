"""Zoom blur: the mean of the image and its centred zooms by each factor of a range."""

from __future__ import annotations

import numpy as np
import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import clipped_zoom


def _factors(stop: float, step: float) -> tuple[float, ...]:
    # numpy's arange, exactly as the benchmark called it (its float rounding decides the last factor)
    return tuple(float(f) for f in np.arange(1, stop, step))


@register_corruption
class ZoomBlur(Corruption):
    name = "zoom_blur"
    title = "Zoom blur"
    family = "blur"
    cifar = tuple(
        _factors(*a) for a in ((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01))
    )
    imagenet = tuple(
        _factors(*a) for a in ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
    )

    def apply(self, x: torch.Tensor, c: tuple[float, ...], setting: Setting) -> torch.Tensor:
        total = x.clone()
        for factor in c:
            total += clipped_zoom(x, factor)
        return total / (len(c) + 1)
