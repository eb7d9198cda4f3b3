"""The smoothed classifier ``g`` of a base model ``f``, with PREDICT and CERTIFY (Cohen et al. 2019).

``g(x)`` is the class ``f`` returns most often on ``x + N(0, sigma^2 I)``. Everything rests on
:meth:`SmoothedClassifier.counts`: how often ``f`` returns each class over ``num`` noisy copies
of each image. The noise is drawn on the model's device with torch, in rounds of at most
``batch_size`` forward passes that hold many images at once when ``num`` is small and one
image's next ``batch_size`` copies when it is large, so the ``n`` copies never sit in memory
together.

Reproducibility: the noise of image ``i`` comes from its own generator, seeded by
:func:`noise_seed` from the classifier's seed, the stage (selection, estimation, prediction) and
the image's index, and is drawn with ``torch.randn`` in rounds of ``min(num, batch_size)``
copies. An image's certificate therefore depends on the seed, its index and the batch size, not
on which images share its batches, and an independent implementation can redraw the same noise.
The noise is added in input units, before the model's own normalisation, and is not clipped to
the input bounds (as in the paper: the guarantee is about the Gaussian, not a clipped one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from robustness.core.errors import ConfigError
from robustness.smoothing import bounds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from robustness.core.model import ModelUnderTest

# The independent sets of draws: CERTIFY's n0 (pick the class) and n (bound its probability),
# PREDICT's n, and the votes that judge adversarial examples (robustness.smoothing.empirical).
STAGES = {"select": 0, "estimate": 1, "predict": 2, "judge": 3}


def default_batch_size(device: torch.device) -> int:
    """Forward passes per round: many on a GPU, which needs large batches to be busy; a few hundred
    on a CPU, where larger batches fall out of the cache (on the digits model 256 was fastest,
    1,000 about 15% and 10,000 twice as slow)."""
    return 10_000 if device.type == "cuda" else 256


def noise_seed(seed: int, stage: str, index: int) -> int:
    """The seed of the generator that draws image ``index``'s noise at ``stage``: distinct for
    every (seed < 2^32, stage, index < 2^30)."""
    return (int(seed) & 0xFFFFFFFF) << 32 | (int(index) & 0x3FFFFFFF) << 2 | STAGES[stage]


def check_smoothing(
    sigma: float, *, n0: int = 1, n: int = 1, alpha: float = 0.001, batch_size: int = 1
) -> None:
    """Refuse parameters CERTIFY cannot run with, naming the field."""
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, int | float)
        or not math.isfinite(sigma)
        or sigma <= 0
    ):
        raise ConfigError(
            f"sigma must be a finite number > 0, got {sigma!r}",
            field="sigma",
            fix="Use the noise level the model was trained with (Cohen et al.: 0.12, 0.25, 0.5 or 1.0).",
        )
    for name, value in (("n0", n0), ("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{name} must be an integer >= 1, got {value!r}",
                field=name,
                fix={
                    "n0": "Use 100 (Cohen et al.).",
                    "n": "Use 100000 (Cohen et al.); fewer certify smaller radii.",
                }.get(name, "Use e.g. 10000."),
            )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(
            f"alpha must be within (0, 1), got {alpha!r}", field="alpha", fix="Use 0.001 (Cohen et al.)."
        )


@dataclass
class Certificates:
    """CERTIFY's answer for each image: the class (-1: abstain) and the l2 radius (NaN: abstain)."""

    prediction: torch.Tensor  # (N,) long, on the CPU
    radius: torch.Tensor  # (N,) float64, NaN where abstaining
    p_lower: torch.Tensor  # (N,) float64: the lower bound on the class's probability
    count: torch.Tensor  # (N,) long: draws of the n that voted for the class
    sigma: float
    n0: int
    n: int
    alpha: float

    @property
    def abstained(self) -> torch.Tensor:
        return self.prediction < 0

    def correct(self, y: torch.Tensor) -> torch.Tensor:
        """Per image: certified for its label (an abstention is never correct)."""
        return (self.prediction == y.cpu().long()) & ~self.abstained

    def certified_accuracy(self, y: torch.Tensor, radii: Sequence[float]) -> list[float]:
        """Share of images correct with a radius of at least each of ``radii``."""
        return bounds.certified_accuracy(self.correct(y).numpy(), self.radius.numpy(), radii)

    @property
    def max_radius(self) -> float:
        """The largest radius ``n`` draws can certify at ``alpha``."""
        return bounds.max_certifiable_radius(self.sigma, self.n, self.alpha)


class SmoothedClassifier:
    """``g`` of ``model`` at noise level ``sigma``; ``batch_size`` forward passes per round
    (default: :func:`default_batch_size` of the model's device)."""

    def __init__(
        self, model: ModelUnderTest, sigma: float, *, batch_size: int | None = None, seed: int = 0
    ) -> None:
        batch_size = default_batch_size(model.device) if batch_size is None else batch_size
        check_smoothing(sigma, batch_size=batch_size)
        self.model = model
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def _num_classes(self, x: torch.Tensor) -> int:
        if self.model.num_classes is None:
            self.model.validate(x)
        return int(self.model.num_classes)

    @torch.no_grad()
    def counts(
        self, x: torch.Tensor, num: int, *, stage: str, index: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(N, classes) votes of the base model over ``num`` noisy copies of each image, on the
        model's device. ``index``: each image's index for its noise seed (default 0..N-1)."""
        model = self.model
        dev = model.device
        x = x.detach().to(dev, torch.float32)
        n_images = int(x.shape[0])
        ids = list(range(n_images)) if index is None else [int(i) for i in index]
        classes = self._num_classes(x)
        out = torch.zeros(n_images, classes, dtype=torch.long, device=dev)
        per_image = min(int(num), self.batch_size)
        images_per_round = max(1, self.batch_size // per_image)
        shape = tuple(x.shape[1:])
        noise = torch.empty((min(images_per_round, max(n_images, 1)) * per_image, *shape), device=dev)
        with model.evaluating():
            for start in range(0, n_images, images_per_round):
                block = x[start : start + images_per_round]
                b = int(block.shape[0])
                gens = [
                    torch.Generator(device=dev).manual_seed(noise_seed(self.seed, stage, ids[start + i]))
                    for i in range(b)
                ]
                rows = out[start : start + b].view(-1)
                left = int(num)
                while left > 0:
                    m = min(per_image, left)
                    for i, gen in enumerate(gens):
                        torch.randn((m, *shape), generator=gen, device=dev, out=noise[i * m : (i + 1) * m])
                    noisy = noise[: b * m].view(b, m, *shape).mul_(self.sigma).add_(block.unsqueeze(1))
                    pred = model(noisy.view(b * m, *shape)).argmax(dim=1)
                    owner = torch.arange(b, device=dev).repeat_interleave(m)
                    # index_add_, not bincount: no wait for the device inside the loop.
                    rows.index_add_(0, owner * classes + pred, torch.ones_like(pred))
                    left -= m
        return out

    def predict(
        self, x: torch.Tensor, n: int, alpha: float, *, index: Sequence[int] | None = None
    ) -> torch.Tensor:
        """PREDICT: the top class of ``n`` draws, or -1 (abstain) unless a two-sided binomial
        test of the top two counts rejects a tie at ``alpha``; on the CPU."""
        check_smoothing(self.sigma, n=n, alpha=alpha)
        counts = self.counts(x, n, stage="predict", index=index).cpu()
        if counts.shape[0] == 0:
            return torch.empty(0, dtype=torch.long)
        top = counts.topk(2, dim=1)
        out = top.indices[:, 0].clone()
        for i, (first, second) in enumerate(top.values.tolist()):
            if bounds.binomial_p_value(first, second) > alpha:
                out[i] = -1
        return out

    def certify(
        self, x: torch.Tensor, n0: int, n: int, alpha: float, *, index: Sequence[int] | None = None
    ) -> Certificates:
        """CERTIFY: ``n0`` draws pick the class, ``n`` fresh draws bound its probability from
        below (one-sided Clopper–Pearson at ``alpha``); abstain below 1/2, else the radius
        ``sigma * Phi^-1(p_lower)``, which with probability at least 1 - alpha is correct."""
        check_smoothing(self.sigma, n0=n0, n=n, alpha=alpha)
        top = self.counts(x, n0, stage="select", index=index).argmax(dim=1)
        count = self.counts(x, n, stage="estimate", index=index).gather(1, top[:, None]).squeeze(1).cpu()
        # Capped at alpha^(1/n), its exact value when every draw votes for the class, so that
        # rounding in the beta quantile never certifies beyond the largest possible radius.
        p_lower = np.minimum(bounds.lower_confidence_bound(count.numpy(), n, alpha), alpha ** (1.0 / n))
        certified = p_lower >= 0.5
        with np.errstate(invalid="ignore", divide="ignore"):
            radius = np.where(certified, bounds.radius(self.sigma, p_lower), np.nan)
        prediction = torch.where(torch.from_numpy(certified), top.cpu(), torch.full_like(top.cpu(), -1))
        return Certificates(
            prediction=prediction,
            radius=torch.from_numpy(radius),
            p_lower=torch.from_numpy(np.asarray(p_lower, dtype=np.float64)),
            count=count,
            sigma=self.sigma,
            n0=int(n0),
            n=int(n),
            alpha=float(alpha),
        )
