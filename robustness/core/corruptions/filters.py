"""Image operations several corruptions share, batched in torch on the images' device.

Padding, Gaussian and 2-D filters, the centred zoom, ImageMagick-style motion blur, the
diamond-square plasma fractal and luminance. Images are ``N x C x H x W`` in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma, as OpenCV's RGB2GRAY and JPEG use it.
LUMA = (0.299, 0.587, 0.114)


def grey(x: torch.Tensor) -> torch.Tensor:
    """Luminance ``N x 1 x H x W`` of grey or RGB images."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int, mode: str = "reflect") -> torch.Tensor:
    """Pad the last two dimensions; ``reflect`` (OpenCV's BORDER_REFLECT_101) also beyond the
    image's own size, where torch's single reflection stops: it reflects again."""
    if mode != "reflect":
        return F.pad(x, (left, right, top, bottom), mode=mode)
    while left or right or top or bottom:
        h, w = x.shape[-2], x.shape[-1]
        step = [min(p, s - 1) for p, s in ((left, w), (right, w), (top, h), (bottom, h))]
        x = F.pad(x, tuple(step), mode="reflect")
        left, right, top, bottom = (p - s for p, s in zip((left, right, top, bottom), step))
    return x


def gaussian_kernel(sigma: float, truncate: float = 4.0, device: torch.device | None = None) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy's and skimage's)."""
    if sigma <= 0:
        return torch.ones(1, device=device)
    radius = int(truncate * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def separable(x: torch.Tensor, kernel: torch.Tensor, mode: str = "replicate") -> torch.Tensor:
    """Filter every channel with ``kernel`` along rows, then columns."""
    r = kernel.numel() // 2
    if r == 0:
        return x
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    k = kernel.to(x.dtype)
    flat = F.conv2d(pad(flat, r, r, 0, 0, mode), k.view(1, 1, 1, -1))
    flat = F.conv2d(pad(flat, 0, 0, r, r, mode), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def gaussian_blur(
    x: torch.Tensor, sigma: float, truncate: float = 4.0, mode: str = "replicate"
) -> torch.Tensor:
    """skimage's ``gaussian`` (edge mode ``nearest`` by default, i.e. replicate)."""
    return separable(x, gaussian_kernel(sigma, truncate, x.device), mode)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """OpenCV's ``filter2D``: correlation of every channel with an odd square ``kernel``."""
    r = kernel.shape[-1] // 2
    n, c, h, w = x.shape
    flat = pad(x.reshape(n * c, 1, h, w), r, r, r, r, mode)
    return F.conv2d(flat, kernel.to(x.dtype).view(1, 1, *kernel.shape)).reshape(n, c, h, w)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` (>= 1) and keep the original size: crop
    ``ceil(side / factor)``, resize linearly (corners on corners, as scipy's ``zoom``), trim."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    zh, zw = max(round(ch * factor), h), max(round(cw * factor), w)
    zoomed = F.interpolate(crop, size=(zh, zw), mode="bilinear", align_corners=True)
    th, tw = (zh - h) // 2, (zw - w) // 2
    return zoomed[..., th : th + h, tw : tw + w]


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur: a one-sided Gaussian streak of ``2 * radius + 1`` taps (weights
    ``exp(-i^2 / 2 sigma^2)``) along each image's own angle (``angle_deg``, one per image), edges
    replicated."""
    r = int(round(radius))
    if r < 1 or sigma <= 0:
        return x
    n, c, h, w = x.shape
    width = 2 * r + 1
    taps = torch.arange(width, device=x.device, dtype=torch.float32)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    theta = torch.deg2rad(angle_deg.to(torch.float32))
    # The streak's step per tap, in whole pixels (as imagecorruptions' port of ImageMagick rounds it).
    dy_unit, dx_unit = torch.sin(theta), torch.cos(theta)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    out = torch.zeros_like(x)
    for i in range(width):
        dy = -torch.ceil(i * dy_unit - 0.5).long()
        dx = -torch.ceil(i * dx_unit - 0.5).long()
        r_idx = (rows.view(1, h) - dy.view(n, 1)).clamp(0, h - 1)
        c_idx = (cols.view(1, w) - dx.view(n, 1)).clamp(0, w - 1)
        out += weights[i] * x[batch, chan, r_idx.view(n, 1, h, 1), c_idx.view(n, 1, 1, w)]
    return out


def plasma_fractal(
    n: int, mapsize: int, decay: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``n`` diamond-square height maps ``mapsize x mapsize`` (a power of two) in [0, 1], as
    Hendrycks' fog: the random offset of level k is uniform with amplitude ``(100 / decay^k)^2``."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize {mapsize} is not a power of two")
    m = torch.zeros(n, mapsize, mapsize, device=device)
    step, wibble = mapsize, 100.0

    def wibbled(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, device=device) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        m[:, half::step, half::step] = wibbled(square)
        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        across = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        m[:, 0::step, half::step] = wibbled(across)
        down = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        m[:, half::step, 0::step] = wibbled(down)
        step //= 2
        wibble /= decay
    flat = m.reshape(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values.clamp_min(1e-12)
    return flat.reshape(n, mapsize, mapsize)


def next_power_of_two(side: int) -> int:
    return 1 << max(int(side) - 1, 1).bit_length()
