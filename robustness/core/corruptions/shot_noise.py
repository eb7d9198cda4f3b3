"""Shot (Poisson) noise: photon counts ``Poisson(c * x) / c``, so the variance is ``x / c``.

The counts are drawn by inverting the Poisson distribution function at one uniform number per
value, so that the severities of a sample, which share their random numbers, get the same
quantile of their count: the noise grows with the severity as one draw would, not as five.
"""

from __future__ import annotations

import math

import torch

from robustness.core.corruptions.base import Corruption, Setting, register_corruption

WALK_STEPS = 8


def poisson_quantile(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The smallest ``k`` with ``P(Poisson(rate) <= k) >= u``, element-wise.

    From the Cornish-Fisher guess, the distribution function there (the regularized
    upper incomplete gamma function, ``P(N <= k) = Q(k + 1, rate)``) and a few steps of the
    probability recurrence to the exact quantile; the rare values still short of it after
    :data:`WALK_STEPS` steps are found by bisection.
    """
    rate = rate.double()
    u = u.double()
    z = torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12))
    # Cornish-Fisher: the normal quantile corrected for the Poisson's skew; off by a step or two.
    k = (rate + rate.sqrt() * z + (z**2 - 1) / 6).floor().clamp(min=0)
    cdf = torch.special.gammaincc(k + 1, rate)
    pmf = torch.exp(torch.special.xlogy(k, rate) - rate - torch.lgamma(k + 1))
    safe_rate = rate.clamp_min(1e-300)
    for _ in range(WALK_STEPS):
        down = (k > 0) & (cdf - pmf >= u)
        if not bool(down.any()) and not bool((cdf < u).any()):
            break  # most guesses are off by a step or two
        cdf = torch.where(down, cdf - pmf, cdf)
        pmf = torch.where(down, pmf * k / safe_rate, pmf)
        k = torch.where(down, k - 1, k)
        up = cdf < u
        k = torch.where(up, k + 1, k)
        pmf = torch.where(up, pmf * rate / k.clamp_min(1), pmf)
        cdf = torch.where(up, cdf + pmf, cdf)
    short = (cdf < u) | ((k > 0) & (cdf - pmf >= u))
    if bool(short.any()):
        k[short] = _bisect(rate[short], u[short])
    return k


def _bisect(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    low = torch.zeros_like(rate)
    high = torch.ceil(rate + 40 * rate.sqrt() + 40)
    for _ in range(math.ceil(math.log2(float(high.max()) + 1)) + 1):
        mid = torch.floor((low + high) / 2)
        enough = torch.special.gammaincc(mid + 1, rate) >= u
        high = torch.where(enough, mid, high)
        low = torch.where(enough, low, mid + 1)
    return high


@register_corruption
class ShotNoise(Corruption):
    name = "shot_noise"
    title = "Shot noise"
    family = "noise"
    cifar = (500, 250, 100, 75, 50)  # photons at full intensity
    imagenet = (60, 25, 12, 5, 3)

    def apply(self, x: torch.Tensor, c: float, setting: Setting) -> torch.Tensor:
        u = setting.rand(*x.shape, device=x.device)
        return (poisson_quantile(x * c, u) / c).to(x.dtype)
