"""Glass blur: Gaussian blur, pixels swapped with a random neighbour within ``delta`` (the
benchmark's sweep from the bottom-right corner, every image its own offsets), blurred again."""

from __future__ import annotations

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import gaussian_blur


@register_corruption
class GlassBlur(Corruption):
    name = "glass_blur"
    title = "Glass blur"
    family = "blur"
    cifar = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # sigma, delta, sweeps
    imagenet = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))

    def apply(self, x: torch.Tensor, c: tuple[float, int, int], setting: Setting) -> torch.Tensor:
        sigma = setting.pixels(c[0])
        delta = max(1, round(setting.pixels(c[1])))
        n, _, h, w = x.shape
        # The benchmark stores the first blur as 8-bit before shuffling.
        x = torch.floor(gaussian_blur(x, sigma).clamp(0, 1) * 255) / 255
        positions = [(i, j) for i in range(h - delta, delta, -1) for j in range(w - delta, delta, -1)]
        if positions:
            offsets = torch.randint(
                -delta, delta, (c[2], len(positions), 2, n), generator=setting.generator, device=x.device
            )
            batch = torch.arange(n, device=x.device)
            for sweep in range(c[2]):
                for k, (i, j) in enumerate(positions):
                    dx, dy = offsets[sweep, k]
                    here = x[batch, :, i, j]
                    there = x[batch, :, i + dy, j + dx]
                    x[batch, :, i, j] = there
                    x[batch, :, i + dy, j + dx] = here
        return gaussian_blur(x, sigma)
