"""JPEG compression at a quality, as libjpeg (and PIL) encode and decode it, in torch.

The baseline codec: 8-bit values, JFIF YCbCr, chroma averaged over 2x2 (4:2:0, PIL's default),
level shift, 8x8 DCT, quantization by the standard tables of Annex K scaled to the quality
(libjpeg's rule), and back: dequantization, inverse DCT, chroma enlarged by the triangle filter
(libjpeg's "fancy" upsampling), RGB, rounded to 8 bits. Grey images are one luma channel, as a
grey JPEG file. Entropy coding is lossless and skipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robustness.core.corruptions.base import Corruption, Setting, register_corruption

LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)
# JFIF RGB -> YCbCr (offset 128 on the chroma), and back.
TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def quantization_table(base: tuple[tuple[int, ...], ...], quality: int, device: torch.device) -> torch.Tensor:
    """libjpeg's ``jpeg_quality_scaling``: 5000/q below 50, 200 - 2q above; entries kept in 1..255."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = torch.tensor(base, dtype=torch.float32, device=device)
    return torch.floor((table * scale + 50) / 100).clamp(1, 255)


def dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II (JPEG's 2-D DCT is ``D @ block @ D.T``)."""
    k = torch.arange(8, dtype=torch.float64).view(-1, 1)
    n = torch.arange(8, dtype=torch.float64).view(1, -1)
    d = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=torch.float32)


def lossy_planes(planes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Blocks of ``planes`` (``n x c x H x W``, sides multiples of 8, values 0..255) through DCT,
    quantization and back."""
    n, c, h, w = planes.shape
    d = dct_matrix(planes.device)
    blocks = (planes - 128).reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)
    coefficients = d @ blocks @ d.T
    quantized = torch.round(coefficients / table) * table
    blocks = d.T @ quantized @ d
    return blocks.transpose(3, 4).reshape(n, c, h, w) + 128


def replicate_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Extend the right and bottom edges to whole blocks, as libjpeg does."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """``x`` (``n x C x H x W`` in [0, 1], ``C`` 1 or 3) encoded and decoded at ``quality``."""
    h, w = x.shape[-2:]
    pixels = torch.round(x.float() * 255)
    luma_table = quantization_table(LUMINANCE_TABLE, quality, x.device)
    if x.shape[1] == 1:
        out = lossy_planes(replicate_to_multiple(pixels, 8), luma_table)[..., :h, :w]
        return torch.round(out.clamp(0, 255)) / 255
    to_ycbcr = torch.tensor(TO_YCBCR, device=x.device)
    ycc = torch.einsum("ij,njhw->nihw", to_ycbcr, pixels)
    ycc[:, 1:] += 128
    ycc = replicate_to_multiple(ycc, 16)
    luma = lossy_planes(ycc[:, :1], luma_table)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = lossy_planes(chroma, quantization_table(CHROMINANCE_TABLE, quality, x.device))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    ycc = torch.cat([luma, chroma], dim=1)[..., :h, :w]
    ycc[:, 1:] -= 128
    rgb = torch.einsum("ij,njhw->nihw", torch.tensor(TO_RGB, device=x.device), ycc)
    return (torch.round(rgb.clamp(0, 255)) / 255).to(x.dtype)


@register_corruption
class JpegCompression(Corruption):
    name = "jpeg_compression"
    title = "JPEG compression"
    family = "digital"
    cifar = (80, 65, 58, 50, 40)  # quality
    imagenet = (25, 18, 15, 10, 7)

    def apply(self, x: torch.Tensor, c: int, setting: Setting) -> torch.Tensor:
        return jpeg(x, c)
