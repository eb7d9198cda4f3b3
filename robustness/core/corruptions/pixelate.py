"""Pixelate: shrink to ``c`` of the size and enlarge back, both with PIL's BOX filter."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption


def box_weights(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """``size_out x size_in`` weights of PIL's BOX resampling along one axis: output pixel ``i``
    averages the input pixels whose centres fall in its footprint (the nearest one when enlarging)."""
    scale = size_in / size_out
    stretch = max(scale, 1.0)
    support = 0.5 * stretch
    weights = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        centre = (i + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), size_in)
        for j in range(first, last):
            t = (j - centre + 0.5) / stretch
            weights[i, j] = 1.0 if -0.5 < t <= 0.5 else 0.0
        weights[i] /= weights[i].sum()
    return weights.to(device=device, dtype=torch.float32)


def box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows = box_weights(x.shape[-2], height, x.device).to(x.dtype)
    cols = box_weights(x.shape[-1], width, x.device).to(x.dtype)
    return rows @ x @ cols.T


@register_corruption
class Pixelate(Corruption):
    name = "pixelate"
    title = "Pixelate"
    family = "digital"
    cifar = (0.95, 0.9, 0.85, 0.75, 0.65)  # share of the side kept
    imagenet = (0.6, 0.5, 0.4, 0.3, 0.25)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        h, w = x.shape[-2:]
        small = box_resize(x, max(int(h * c), 1), max(int(w * c), 1))
        return box_resize(small, h, w)
