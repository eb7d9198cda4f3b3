"""Elastic transform: a random affine warp of three points around the centre, then a smooth
random displacement field (uniform noise, Gaussian-smoothed, scaled), sampled bilinearly with
reflected borders in one pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustness.core.corruptions.base import Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import gaussian_blur


@register_corruption
class ElasticTransform(Corruption):
    name = "elastic_transform"
    title = "Elastic transform"
    family = "digital"
    # displacement scale, its smoothing sigma, affine jitter: shares of the image side (CIFAR-10-C
    # writes them as IMSIZE * share) ...
    cifar = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
    # ... and shares of 244 pixels at 224 (ImageNet-C's own "244 should have been 224").
    imagenet = ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))

    def apply(self, x: torch.Tensor, c: tuple[float, float, float], setting: Setting) -> torch.Tensor:
        n, _, h, w = x.shape
        unit = (h * w) ** 0.5 if setting.constants == "cifar10-c" else setting.pixels(244)
        alpha, sigma, jitter = (share * unit for share in c)
        dev = x.device
        # Three points around the centre (x, y), moved at random: the warp maps the moved points
        # back to the originals (the inverse map that sampling needs).
        cx, cy, half = float(w // 2), float(h // 2), float(min(h, w) // 3)
        before = torch.tensor(
            [[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], device=dev
        )
        after = before + setting.uniform(-jitter, jitter, n, 3, 2, device=dev)
        inverse = torch.linalg.solve(
            torch.cat([after, torch.ones(n, 3, 1, device=dev)], dim=2), before.expand(n, 3, 2)
        )
        field = setting.uniform(-1.0, 1.0, n, 2, h, w, device=dev)
        field = gaussian_blur(field, sigma, truncate=3.0, mode="reflect") * alpha
        ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
        px = xs.float() + field[:, 0]
        py = ys.float() + field[:, 1]
        points = torch.stack([px, py, torch.ones_like(px)], dim=-1)  # n x h x w x 3
        src = points.reshape(n, -1, 3) @ inverse  # n x (h w) x 2
        grid = torch.stack(
            [src[..., 0] * 2 / max(w - 1, 1) - 1, src[..., 1] * 2 / max(h - 1, 1) - 1], dim=-1
        ).reshape(n, h, w, 2)
        return F.grid_sample(
            x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=True
        )
