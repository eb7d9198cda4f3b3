"""Threat models: which perturbations the adversary may apply.

A threat model is a norm, one or more radii (``eps``) and the valid input range. The
ball arithmetic used by every attack (norms, projection, clipping) lives here so that
there is exactly one implementation of it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from robustness.core.errors import ThreatModelError

NORMS = ("linf", "l2", "l1")


def check_norm(norm: str, *, field: str = "norm") -> str:
    """Return ``norm`` normalised to lower case, or raise a clear error."""
    value = str(norm).lower()
    aliases = {"inf": "linf", "l_inf": "linf", "linfty": "linf", "2": "l2", "1": "l1"}
    value = aliases.get(value, value)
    if value not in NORMS:
        raise ThreatModelError(f"unknown norm {norm!r}", field=field, fix=f"Use one of: {', '.join(NORMS)}.")
    return value


def check_eps(
    eps: float | Sequence[float],
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    norm: str = "linf",
    field: str = "eps",
) -> tuple[float, ...]:
    """Validate one radius or a grid; returns the grid sorted ascending.

    Two radii equal at the grid's precision (see :func:`same_eps`) are an error naming both.
    """
    if isinstance(eps, (str, bytes, numbers.Number)) or getattr(eps, "ndim", None) == 0:
        values = [eps]  # one value (a string is one value too, not a sequence of characters)
    else:
        try:
            values = list(eps)
        except TypeError:
            values = [eps]
    if not values:
        raise ThreatModelError("no epsilon given", field=field, fix="Give at least one value, e.g. 0.1.")
    out = []
    for v in values:
        try:
            if isinstance(v, bool):
                raise TypeError("a boolean is not a radius")
            f = float(v)
        except (TypeError, ValueError):
            raise ThreatModelError(
                f"{v!r} is not a number", field=field, fix="Give eps as positive numbers, e.g. 0.05 0.1."
            ) from None
        if not math.isfinite(f) or f <= 0:
            raise ThreatModelError(
                f"eps must be a finite number > 0, got {v!r}",
                field=field,
                fix="Give eps as positive numbers, e.g. 0.05 0.1.",
            )
        out.append(f)
    refuse_duplicate_eps(out, field=field)
    lo, hi = bounds
    width = hi - lo
    # The largest meaningful radius: beyond it the ball already covers the whole input box
    # for linf; for l2/l1 we only reject absurd values (dimension is unknown here).
    limit = width if norm == "linf" else width * 1e4
    for f in out:
        if f > limit:
            raise ThreatModelError(
                f"eps {f:g} exceeds the input range {width:g} for norm {norm}",
                field=field,
                fix=f"For inputs in [{lo:g}, {hi:g}] use eps <= {limit:g} (eps is in input units, not pixels/255).",
            )
    return tuple(sorted(out))


def same_eps(a: float, b: float) -> bool:
    """Whether two radii are one grid point: equal as reports and gate keys print them (``:g``,
    six significant digits), or within the tolerance gate keys are matched with."""
    return f"{a:g}" == f"{b:g}" or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def refuse_duplicate_eps(values: Sequence[float], *, field: str = "eps") -> None:
    """Raise :class:`ThreatModelError` naming two radii of ``values`` that are one grid point."""
    # A repeated radius would be attacked twice and shown as two identical columns; for gates it
    # makes "the threshold at eps 0.1" ambiguous. Refused rather than silently merged.
    order = sorted(range(len(values)), key=values.__getitem__)
    for i, j in zip(order, order[1:]):
        if same_eps(values[i], values[j]):
            raise ThreatModelError(
                f"eps {values[i]!r} and {values[j]!r} are the same radius at the grid's precision "
                f"(both {values[i]:g})",
                field=field,
                fix="Give each eps once; radii must differ in their first six significant digits.",
            )


def check_bounds(bounds: Iterable[float], *, field: str = "bounds") -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ThreatModelError(
            f"bounds must be two numbers, got {bounds!r}",
            field=field,
            fix="Give bounds as [low, high], e.g. [0, 1].",
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ThreatModelError(
            f"bounds must be finite with low < high, got [{lo}, {hi}]",
            field=field,
            fix="Give bounds as [low, high], e.g. [0, 1].",
        )
    return lo, hi


@dataclass(frozen=True)
class ThreatModel:
    """A norm, a grid of radii and the valid input range."""

    norm: str = "linf"
    eps: tuple[float, ...] = (0.1,)
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        norm = check_norm(self.norm)
        bounds = check_bounds(self.bounds)
        object.__setattr__(self, "norm", norm)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "eps", check_eps(self.eps, bounds=bounds, norm=norm))

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": list(self.eps), "bounds": list(self.bounds)}


# ---------------------------------------------------------------------------------------
# Ball arithmetic. ``eps`` may be a float or a per-sample tensor of shape (N,).


def _per_sample(eps: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(eps, torch.Tensor):
        return eps.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
    return torch.full(
        (like.shape[0],) + (1,) * (like.dim() - 1), float(eps), device=like.device, dtype=like.dtype
    )


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of a batch of perturbations, shape (N,)."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ThreatModelError(f"unknown norm {norm!r}", field="norm", fix=f"Use one of: {', '.join(NORMS)}.")


def _project_l1(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto the l1 ball (Duchi et al. 2008), batched."""
    n = delta.shape[0]
    flat = delta.flatten(1)
    radius = eps.reshape(n)
    abs_flat = flat.abs()
    inside = abs_flat.sum(dim=1) <= radius
    mu, _ = abs_flat.sort(dim=1, descending=True)
    cumsum = mu.cumsum(dim=1)
    idx = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = mu - (cumsum - radius[:, None]) / idx > 0
    rho = cond.to(flat.dtype).mul(idx).argmax(dim=1)  # last index where cond holds
    theta = (cumsum.gather(1, rho[:, None]).squeeze(1) - radius) / (rho + 1).to(flat.dtype)
    projected = flat.sign() * (abs_flat - theta[:, None]).clamp_min(0)
    out = torch.where(inside[:, None], flat, projected)
    return out.view_as(delta)


def project(delta: torch.Tensor, norm: str, eps: float | torch.Tensor) -> torch.Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps`` (per sample)."""
    e = _per_sample(eps, delta)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    if norm == "l2":
        n = lp_norm(delta, "l2").reshape(e.shape)
        factor = torch.clamp(e / (n + 1e-12), max=1.0)
        return delta * factor
    if norm == "l1":
        return _project_l1(delta, e)
    raise ThreatModelError(f"unknown norm {norm!r}", field="norm", fix=f"Use one of: {', '.join(NORMS)}.")


def clip_to_ball_and_bounds(
    x_adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float | torch.Tensor, bounds: tuple[float, float]
) -> torch.Tensor:
    """Return the point closest to ``x_adv`` that is inside both the ball around ``x`` and the bounds.

    For linf the two sets are boxes, so clipping to each is exact. For l2/l1, projecting the
    ball then clipping to the box keeps the result inside both (clipping towards ``x``
    never increases the norm), which is what the guarantee needs.
    """
    delta = project(x_adv - x, norm, eps)
    return (x + delta).clamp(bounds[0], bounds[1])


def random_in_ball(
    x: torch.Tensor, norm: str, eps: float | torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random perturbation inside the ball: uniform for linf, uniform in the ball for l2, sparse-ish for l1."""
    e = _per_sample(eps, x)
    if norm == "linf":
        u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        return (2 * u - 1) * e
    d = x[0].numel()
    if norm == "l2":
        g = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        g = g / (lp_norm(g, "l2").reshape(e.shape) + 1e-12)
        r = torch.rand(e.shape, device=x.device, dtype=x.dtype, generator=generator) ** (1.0 / d)
        return g * r * e
    if norm == "l1":
        # Laplace direction, radius drawn like a uniform point in the l1 ball.
        # torch.distributions takes no generator, so draw Laplace samples by inversion.
        u = torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator).clamp_min(1e-12)
        sign = torch.where(
            torch.rand(x.shape, device=x.device, dtype=x.dtype, generator=generator) < 0.5, -1.0, 1.0
        )
        g = -u.log() * sign
        g = g / (lp_norm(g, "l1").reshape(e.shape) + 1e-12)
        r = torch.rand(e.shape, device=x.device, dtype=x.dtype, generator=generator) ** (1.0 / d)
        return g * r * e
    raise ThreatModelError(f"unknown norm {norm!r}", field="norm", fix=f"Use one of: {', '.join(NORMS)}.")
