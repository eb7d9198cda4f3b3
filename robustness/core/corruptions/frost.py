"""Frost: the image dimmed and a frost texture added, ``c0 * x + c1 * frost``.

The benchmark crops photographs of frost on glass; none are shipped here. Each image gets its own
texture, generated from its seed: needle crystals (anti-aliased streaks in six directions, long
ones and short branches, from sparse random seeds), denser where a plasma fractal says so, on a
faint icy haze, tinted pale blue. Their statistics (mean about 0.4, bright crystals near 1 on a
darker ground) follow the photographs' role in the formula; the exact pixels of CIFAR-10-C and
ImageNet-C cannot be reproduced without them. Grey images add the texture's luminance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustness.core.corruptions.base import CIFAR_MAX_SIDE, Corruption, Setting, register_corruption
from robustness.core.corruptions.filters import gaussian_blur, grey, next_power_of_two, plasma_fractal

DIRECTIONS = 6
TINT = (0.84, 0.92, 1.0)  # pale blue, as ice on a window
TEXTURE_MAX_SIDE = 128  # drawn at most this large, then enlarged (the crystals are smooth)


def needle_kernels(length: int, device: torch.device) -> torch.Tensor:
    """``DIRECTIONS x 1 x L x L`` anti-aliased line segments through the centre, thinning to their ends."""
    half = length // 2
    t = torch.arange(-half, half + 1, device=device, dtype=torch.float32)
    v, u = torch.meshgrid(t, t, indexing="ij")
    kernels = []
    for k in range(DIRECTIONS):
        angle = math.pi * k / DIRECTIONS
        along = u * math.cos(angle) + v * math.sin(angle)
        across = (-u * math.sin(angle) + v * math.cos(angle)).abs()
        taper = (1 - along.abs() / (half + 0.5)).clamp(min=0)
        kernels.append((1 - across).clamp(min=0) * taper.sqrt())
    return torch.stack(kernels).unsqueeze(1)


def frost_texture(n: int, side: int, setting: Setting, device: torch.device) -> torch.Tensor:
    """``n x 3 x side x side`` frost textures in [0, 1] from the setting's generator."""
    size = min(side, TEXTURE_MAX_SIDE)
    long_needle = max(5, (size // 4) | 1)
    short_needle = max(3, (size // 10) | 1)
    crystals = torch.zeros(n, 1, size, size, device=device)
    for length, density, strength in ((long_needle, 0.09, 0.9), (short_needle, 0.12, 0.6)):
        # A needle of length L covers about L pixels: `density` is the share each direction covers,
        # the same at every size.
        chance = density / length
        seeds = (setting.rand(n, DIRECTIONS, size, size, device=device) < chance).float()
        seeds = seeds * setting.uniform(0.4, 1.0, n, DIRECTIONS, size, size, device=device)
        kernel = needle_kernels(length, device)
        streaks = F.conv2d(seeds, kernel, padding=length // 2, groups=DIRECTIONS).sum(dim=1, keepdim=True)
        crystals = crystals + strength * streaks
    patches = plasma_fractal(n, next_power_of_two(size), 1.6, setting.generator, device)[
        :, None, :size, :size
    ]
    crystals = crystals * (0.3 + patches)
    texture = 1 - torch.exp(-1.6 * crystals)  # saturates where crystals cross, as ice whitens
    texture = gaussian_blur(0.85 * texture + 0.2 * patches, 0.5)
    if size != side:
        texture = F.interpolate(texture, size=(side, side), mode="bilinear", align_corners=False)
    tint = torch.tensor(TINT, device=device).view(1, 3, 1, 1)
    return (texture * tint).clamp(0, 1)


@register_corruption
class Frost(Corruption):
    name = "frost"
    title = "Frost"
    family = "weather"
    cifar = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # image weight, frost weight
    imagenet = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))

    def apply(self, x: torch.Tensor, c: tuple[float, float], setting: Setting) -> torch.Tensor:
        n, channels, h, w = x.shape
        # CIFAR-10-C crops 32x32 of its textures (a small image sees a corner); ImageNet-C image-sized ones.
        side = CIFAR_MAX_SIDE if setting.constants == "cifar10-c" else max(h, w)
        texture = frost_texture(n, side, setting, x.device)[..., :h, :w].to(x.dtype)
        if channels == 1:
            texture = grey(texture)
        return c[0] * x + c[1] * texture
