"""The contract of a corruption, the registry, and :func:`corrupt`.

A corruption subclass declares its ``name``, ``title``, ``family`` and the five constants of
each benchmark (``cifar``: CIFAR-10-C, ``imagenet``: ImageNet-C, from hendrycks/robustness),
and writes :meth:`Corruption.apply` on a chunk of images in [0, 1]. :meth:`Corruption.__call__`
does the rest, once for every corruption:

- checks the input: ``N x C x H x W`` floats, ``C`` 1 (grey) or 3 (RGB), ``H, W >= 8``;
- maps the model's bounds to [0, 1] and back, and clamps the result into them;
- picks the constants by size: CIFAR-10-C for images up to 32x32, ImageNet-C above; and the
  :attr:`Setting.scale` of lengths given in pixels (blur radii, shifts): 1 for the CIFAR-10-C
  constants (pixels as published, whatever the size), ``side / 224`` for the ImageNet-C ones,
  so that a 64x64 image is blurred like a 224x224 one seen at 64x64;
- draws every random number on the input's device from a generator seeded by
  ``(seed, corruption, chunk)``, over fixed chunks of :data:`CHUNK` samples: the result depends
  only on the seed and the sample's position, never on how the caller batches. (CPU and CUDA
  generators differ, so the same seed gives other draws on another device.) The severity is not
  in the seed: the severities of a sample share their random numbers (common random numbers),
  so its Gaussian noise is one draw scaled up and its impulse noise hits a growing set of the
  same pixels, and an accuracy curve over severities shows the severity, not the luck of five
  independent draws.

Grey images (``C = 1``) are corrupted as luminance: per-pixel noise and blurs act on the one
channel; colour operations (brightness in HSV, the snow's grey-scale lift) reduce to what they
do to an RGB image with three equal channels; frost adds its texture's luminance; JPEG encodes
one luma channel, as a grey JPEG file does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from robustness.core.errors import DataError, UsageError
from robustness.core.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
# Samples per seeded chunk: the draws of a sample depend on its chunk, never on the caller's batch.
CHUNK = 256
# CIFAR-10-C constants up to this side; ImageNet-C constants (scaled from 224 pixels) above it.
CIFAR_MAX_SIDE = 32
IMAGENET_SIDE = 224
MIN_SIDE = 8
# The order of the benchmark's tables (noise, blur, weather, digital).
CORRUPTION_ORDER = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)


@dataclass(frozen=True)
class Setting:
    """What a corruption needs besides the images: the benchmark whose constants apply, the scale
    of its pixel lengths, and the seeded generator of this chunk."""

    constants: str  # "cifar10-c" or "imagenet-c"
    scale: float
    generator: torch.Generator

    def pixels(self, length: float) -> float:
        """A length given in the benchmark's pixels, at this image size."""
        return float(length) * self.scale

    def rand(self, *shape: int, device: torch.device) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=device)

    def randn(self, *shape: int, device: torch.device) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=device)

    def uniform(self, low: float, high: float, *shape: int, device: torch.device) -> torch.Tensor:
        return low + (high - low) * self.rand(*shape, device=device)


def constants_for(height: int, width: int) -> tuple[str, float]:
    """The benchmark whose constants apply to ``height x width`` images, and the pixel scale."""
    if max(height, width) <= CIFAR_MAX_SIDE:
        return "cifar10-c", 1.0
    return "imagenet-c", (height * width) ** 0.5 / IMAGENET_SIDE


class Corruption:
    """Base class: one common corruption at five severities (see the module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    family: ClassVar[str] = ""  # noise, blur, weather, digital
    # One constant (a number or a tuple) per severity 1..5, as in make_cifar_c.py / make_imagenet_c.py.
    cifar: ClassVar[tuple[Any, ...]] = ()
    imagenet: ClassVar[tuple[Any, ...]] = ()

    def constant(self, severity: int, constants: str) -> Any:
        table = self.cifar if constants == "cifar10-c" else self.imagenet
        return table[severity - 1]

    def apply(self, x: torch.Tensor, c: Any, setting: Setting) -> torch.Tensor:
        """Corrupt ``x`` (``n x C x H x W`` in [0, 1], ``C`` 1 or 3) with the severity's constant ``c``."""
        raise NotImplementedError

    def __call__(
        self,
        x: torch.Tensor,
        severity: int,
        *,
        seed: int = 0,
        bounds: Sequence[float] = (0.0, 1.0),
        start: int = 0,
    ) -> torch.Tensor:
        """``x`` corrupted at ``severity`` (1 to 5), in ``bounds``, on ``x``'s device and dtype.

        ``start`` is the position of ``x[0]`` in a larger data set streamed in parts (a multiple
        of :data:`CHUNK`): each part then gets the draws it gets when corrupted with the rest.
        """
        severity = check_severity(severity)
        check_images(x)
        if start % CHUNK:
            raise ValueError(f"start {start} is not a multiple of the chunk size {CHUNK}")
        lo, hi = float(bounds[0]), float(bounds[1])
        constants, scale = constants_for(int(x.shape[-2]), int(x.shape[-1]))
        c = self.constant(severity, constants)
        out = torch.empty_like(x)
        with torch.no_grad():
            for i, first in enumerate(range(0, x.shape[0], CHUNK)):
                chunk = x[first : first + CHUNK].float()
                unit = ((chunk - lo) / (hi - lo)).clamp(0.0, 1.0)
                generator = torch.Generator(device=x.device).manual_seed(
                    chunk_seed(seed, self.name, start // CHUNK + i)
                )
                done = self.apply(unit, c, Setting(constants, scale, generator)).clamp(0.0, 1.0)
                out[first : first + CHUNK] = (done * (hi - lo) + lo).to(x.dtype)
        return out


def chunk_seed(seed: int, name: str, chunk: int) -> int:
    """A stable 63-bit seed for one chunk of one corruption (the same at every severity)."""
    digest = hashlib.sha256(f"{int(seed)}:{name}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_severity(severity: Any) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise UsageError(
            f"a corruption severity is an integer from 1 to 5, got {severity!r}",
            field="severity",
            fix="Use 1 (mildest) to 5 (strongest), as in CIFAR-10-C and ImageNet-C.",
        )
    return severity


def check_images(x: Any) -> None:
    """Corruptions take image batches ``N x C x H x W``: ``C`` 1 or 3, both sides at least 8."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(
            f"corruptions take a float tensor of images N x C x H x W, got {shape}",
            field="data",
            fix="Give image data: channels first, 1 (grey) or 3 (RGB) channels, float values in the bounds.",
        )
    c, h, w = (int(s) for s in x.shape[1:])
    if c not in (1, 3) or min(h, w) < MIN_SIDE:
        raise DataError(
            f"corruptions need images with 1 or 3 channels and sides of at least {MIN_SIDE} pixels, "
            f"got {c} x {h} x {w}",
            field="data",
            fix="Use grey or RGB images, channels first (N x C x H x W), at least 8x8.",
        )


CORRUPTIONS: Registry[type[Corruption]] = Registry(
    "corruption",
    package="robustness.core.corruptions",
    entry_points="robustness.plugins",
    error=UsageError,
    field="corruption",
)


def register_corruption(cls: type[Corruption]) -> type[Corruption]:
    """Class decorator: make a corruption available by its ``name``."""
    if not cls.name or len(cls.cifar) != len(SEVERITIES) or len(cls.imagenet) != len(SEVERITIES):
        raise ValueError(f"corruption {cls.__name__} needs a name and five constants per benchmark")
    return CORRUPTIONS.add(cls.name, cls)


def corruption_names() -> list[str]:
    """Every registered corruption: the benchmark's 15 in its order, then any plug-ins by name."""
    names = CORRUPTIONS.names()
    return [n for n in CORRUPTION_ORDER if n in names] + [n for n in names if n not in CORRUPTION_ORDER]


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name`` (the registry's error names the known ones)."""
    return CORRUPTIONS.get(name)()


def corrupt(
    x: torch.Tensor,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    bounds: Sequence[float] = (0.0, 1.0),
) -> torch.Tensor:
    """``x`` (``N x C x H x W`` in ``bounds``) with corruption ``name`` at ``severity``."""
    return get_corruption(name)(x, severity, seed=seed, bounds=bounds)
