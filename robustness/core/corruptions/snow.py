"""Snow: a thresholded, zoomed Gaussian layer of flakes streaked by motion blur (falling at a
random angle in [-135, -45] degrees), added twice (the second turned 180 degrees) to an image
whitened towards its lifted luminance."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import clipped_zoom, grey, motion_blur


@register_corruption
class Snow(Corruption):
    name = "snow"
    title = "Snow"
    family = "weather"
    # flake mean, flake std, zoom, threshold, streak radius, streak sigma, share of the image kept
    cifar = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )
    imagenet = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )

    def apply(self, x: torch.Tensor, c: tuple[float, ...], setting: Setting) -> torch.Tensor:
        loc, std, zoom, threshold, radius, sigma, kept = c
        n, _, h, w = x.shape
        flakes = loc + std * setting.randn(n, 1, h, w, device=x.device)
        flakes = clipped_zoom(flakes, zoom)
        flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
        flakes = torch.floor(flakes.clamp(0, 1) * 255) / 255  # the benchmark's 8-bit layer
        angle = setting.uniform(-135.0, -45.0, n, device=x.device)
        flakes = motion_blur(flakes, setting.pixels(radius), setting.pixels(sigma), angle)
        x = kept * x + (1 - kept) * torch.maximum(x, grey(x) * 1.5 + 0.5)
        return x + flakes + flakes.flip(-2, -1)
