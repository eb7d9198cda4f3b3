"""Defocus blur: every channel filtered with an anti-aliased disk (radius, alias blur)."""

from __future__ import annotations

import math

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import filter2d, separable


def disk_kernel(radius: float, alias_blur: float, device: torch.device) -> torch.Tensor:
    """The disk ``x^2 + y^2 <= radius^2`` (sum 1) on a grid of at least 17x17, smoothed by a 3x3
    (5x5 beyond radius 8) Gaussian of ``alias_blur`` as OpenCV's GaussianBlur does, then cropped
    to its support."""
    half = 8 if radius <= 8 else math.ceil(radius)
    t = torch.arange(-half, half + 1, device=device, dtype=torch.float32)
    inside = ((t.view(-1, 1) ** 2 + t.view(1, -1) ** 2) <= radius**2).float()
    kernel = (inside / inside.sum()).view(1, 1, *inside.shape)
    taps = torch.arange(-(1 if radius <= 8 else 2), (1 if radius <= 8 else 2) + 1, device=device)
    smooth = torch.exp(-(taps.float() ** 2) / (2 * alias_blur**2)) if alias_blur > 0 else (taps == 0).float()
    kernel = separable(kernel, smooth / smooth.sum(), mode="reflect")[0, 0]
    # Drop the zero border (it only costs time and padding on small images).
    support = (kernel > kernel.max() * 1e-7).nonzero()
    reach = int((support - half).abs().max())
    kernel = kernel[half - reach : half + reach + 1, half - reach : half + reach + 1]
    return kernel / kernel.sum()


@register_corruption
class DefocusBlur(Corruption):
    name = "defocus_blur"
    title = "Defocus blur"
    family = "blur"
    cifar = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, alias blur
    imagenet = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))

    def apply(self, x: torch.Tensor, c: tuple[float, float], setting: Setting) -> torch.Tensor:
        kernel = disk_kernel(setting.pixels(c[0]), setting.pixels(c[1]), x.device)
        return filter2d(x, kernel, mode="reflect")
