"""Threat models: norm and eps validation, and the ball arithmetic every attack relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustness.core.errors import ThreatModelError
from robustness.core.threat import (
    ThreatModel,
    check_bounds,
    check_eps,
    check_norm,
    clip_to_ball_and_bounds,
    lp_norm,
    project,
    random_in_ball,
)

NORMS = ["linf", "l2", "l1"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    "given, expected",
    [
        ("linf", "linf"),
        ("Linf", "linf"),
        ("inf", "linf"),
        ("L2", "l2"),
        ("2", "l2"),
        ("l1", "l1"),
        ("1", "l1"),
    ],
)
def test_norms(given, expected):
    assert check_norm(given) == expected


@pytest.mark.parametrize("bad", ["l0", "l3", "", "euclid"])
def test_unknown_norm(bad):
    with pytest.raises(ThreatModelError, match=f"unknown norm {bad!r}") as e:
        check_norm(bad)
    assert "linf, l2, l1" in str(e.value) and e.value.field == "norm"


def test_eps_grid_is_sorted():
    assert check_eps(0.1) == (0.1,)
    assert check_eps([0.3, 0.1, 0.2]) == (0.1, 0.2, 0.3)
    assert check_eps("0.05") == (0.05,)
    assert check_eps(np.array([0.2, 0.1])) == (0.1, 0.2)
    assert check_eps(torch.tensor(0.25)) == (0.25,)
    assert check_eps(1.0) == (1.0,)  # the whole [0, 1] box: allowed (the "huge eps" sanity check)
    assert check_eps(3.0, norm="l2") == (3.0,)


@pytest.mark.parametrize(
    "eps, expected",
    [
        (0, "eps must be a finite number > 0, got 0"),
        (-0.1, "eps must be a finite number > 0, got -0.1"),
        (float("inf"), "eps must be a finite number > 0, got inf"),
        (float("nan"), "eps must be a finite number > 0, got nan"),
        ([0.1, -1], "got -1"),
        ([], "no epsilon given"),
        ("abc", "'abc' is not a number"),
        (True, "True is not a number"),
        (None, "None is not a number"),
        (8, r"eps 8 exceeds the input range 1 for norm linf"),
        (1.0001, "exceeds the input range 1"),
    ],
)
def test_bad_eps(eps, expected):
    with pytest.raises(ThreatModelError, match=expected) as e:
        check_eps(eps)
    assert e.value.field == "eps" and e.value.fix


def test_eps_limit_follows_bounds():
    assert check_eps(8, bounds=(0, 255)) == (8.0,)
    with pytest.raises(ThreatModelError, match=r"use eps <= 2 \(eps is in input units"):
        check_eps(2.5, bounds=(-1, 1))


@pytest.mark.parametrize("bounds", [(1, 0), (0, 0), (0, float("inf")), (float("nan"), 1), (0,), "ab", None])
def test_bad_bounds(bounds):
    with pytest.raises(ThreatModelError, match="bounds must be"):
        check_bounds(bounds)


def test_threat_model():
    t = ThreatModel("L2", [0.5, 0.25], (0, 1))
    assert (t.norm, t.eps, t.bounds) == ("l2", (0.25, 0.5), (0.0, 1.0))
    assert t.to_dict() == {"norm": "l2", "eps": [0.25, 0.5], "bounds": [0.0, 1.0]}
    with pytest.raises(ThreatModelError):
        ThreatModel("linf", (0.0,))
    with pytest.raises(ThreatModelError):
        ThreatModel("l7", (0.1,))


# ---------------------------------------------------------------------------------------
# norms and projections


def test_lp_norm_values():
    d = torch.tensor([[[3.0, -4.0]], [[0.0, -1.0]]])
    assert lp_norm(d, "linf").tolist() == [4.0, 1.0]
    assert lp_norm(d, "l2").tolist() == [5.0, 1.0]
    assert lp_norm(d, "l1").tolist() == [7.0, 1.0]
    with pytest.raises(ThreatModelError):
        lp_norm(d, "l3")


def _l1_reference(v: np.ndarray, eps: float) -> np.ndarray:
    """Projection onto the l1 ball by bisection on the soft-threshold (independent of the sort method)."""
    a = np.abs(v)
    if a.sum() <= eps:
        return v.copy()
    lo, hi = 0.0, float(a.max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(a - mid, 0).sum() > eps:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(a - hi, 0)


def test_l1_projection_matches_reference():
    g = _gen(1)
    delta = torch.randn(64, 3, 5, 5, generator=g, dtype=torch.float64)
    delta[::4] *= 0.01  # some points already inside
    delta[1, 0, 0, 0] = 50.0  # a dominant coordinate
    delta[2] = 0.0
    eps = torch.rand(64, generator=g, dtype=torch.float64) * 5 + 0.1
    out = project(delta, "l1", eps)
    for i in range(64):
        ref = _l1_reference(delta[i].flatten().numpy(), float(eps[i]))
        np.testing.assert_allclose(out[i].flatten().numpy(), ref, atol=1e-9)


def test_l1_projection_is_the_closest_point():
    # Projected point beats every other feasible point we try (random points on/inside the ball).
    g = _gen(2)
    v = torch.randn(1, 20, generator=g, dtype=torch.float64) * 2
    p = project(v, "l1", 1.0)
    cand = random_in_ball(torch.zeros(2000, 20, dtype=torch.float64), "l1", 1.0, _gen(3))
    assert float((p - v).norm()) <= float((cand - v).norm(dim=1).min()) + 1e-12


@pytest.mark.parametrize("norm", NORMS)
def test_projection_norms_and_fixed_points(norm):
    g = _gen(4)
    delta = torch.randn(40, 1, 8, 8, generator=g)
    eps = torch.rand(40, generator=g) * 0.5 + 0.05
    out = project(delta, norm, eps)
    assert (lp_norm(out, norm) <= eps + 1e-5).all()
    outside = lp_norm(delta, norm) > eps
    assert outside.all()  # all these random points start outside: the projection lands on the sphere
    torch.testing.assert_close(lp_norm(out, norm), eps, rtol=1e-4, atol=1e-5)
    # points inside stay exactly where they are
    inside = project(out * 0.5, norm, eps)
    assert torch.equal(inside, out * 0.5)
    # a scalar eps equals the same eps per sample
    torch.testing.assert_close(project(delta, norm, 0.2), project(delta, norm, torch.full((40,), 0.2)))
    # projecting twice changes nothing
    torch.testing.assert_close(project(out, norm, eps), out)


def test_linf_and_l2_projection_values():
    d = torch.tensor([[0.5, -0.05, -0.3]])
    assert project(d, "linf", 0.1).tolist() == [
        [0.10000000149011612, -0.05000000074505806, -0.10000000149011612]
    ]
    d = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(project(d, "l2", 1.0), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(project(d, "l1", 1.0), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(project(d, "l1", 3.0), torch.tensor([[1.0, 2.0]]))


@pytest.mark.parametrize("norm", NORMS)
def test_random_in_ball(norm):
    x = torch.rand(500, 1, 8, 8, generator=_gen(5))
    eps = torch.full((500,), 0.3)
    eps[::2] = 0.1
    d = random_in_ball(x, norm, eps, _gen(6))
    n = lp_norm(d, norm)
    assert d.shape == x.shape and (n <= eps + 1e-6).all()
    assert (n > 0).all()
    assert torch.equal(d, random_in_ball(x, norm, eps, _gen(6)))  # reproducible with a generator
    assert not torch.equal(d, random_in_ball(x, norm, eps, _gen(7)))
    if norm == "linf":
        # uniform in the box: every coordinate spread over [-eps, eps]
        assert float(d[1::2].abs().max()) > 0.29 and abs(float(d.mean())) < 0.01
    else:
        # uniform in a 64-dimensional ball: the radius concentrates near eps (median r = 0.5 ** (1/64))
        ratio = (n / eps).median()
        assert abs(float(ratio) - 0.5 ** (1 / 64)) < 0.01


@pytest.mark.parametrize("norm", NORMS)
def test_clip_to_ball_and_bounds(norm):
    g = _gen(8)
    x = torch.rand(100, 1, 8, 8, generator=g)
    x[:10] = 0.0  # on the boundary of the box
    x_adv = x + torch.randn(100, 1, 8, 8, generator=g)
    eps = torch.rand(100, generator=g) * 2 + 0.01
    if norm == "linf":
        eps = eps / 2
    out = clip_to_ball_and_bounds(x_adv, x, norm, eps, (0.0, 1.0))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert (lp_norm(out - x, norm) <= eps + 1e-5).all()
    # a point already inside both is unchanged
    inside = x + project((x_adv - x) * 0.01, norm, eps)
    inside = inside.clamp(0, 1)
    torch.testing.assert_close(clip_to_ball_and_bounds(inside, x, norm, eps, (0.0, 1.0)), inside)


def test_clip_to_ball_and_bounds_linf_is_exact():
    x = torch.tensor([[0.05, 0.5, 0.95]])
    x_adv = torch.tensor([[-1.0, 0.58, 2.0]])
    out = clip_to_ball_and_bounds(x_adv, x, "linf", 0.1, (0.0, 1.0))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.58, 1.0]]))


def test_float64_and_odd_shapes():
    d = torch.randn(3, 7, dtype=torch.float64, generator=_gen(9))
    for norm in NORMS:
        out = project(d, norm, 0.5)
        assert out.dtype == torch.float64 and out.shape == (3, 7)
        assert (lp_norm(out, norm) <= 0.5 + 1e-9).all()
        assert random_in_ball(d, norm, 0.5, _gen(1)).dtype == torch.float64
    assert math.isclose(float(lp_norm(project(d, "l2", 0.5), "l2").max()), 0.5, rel_tol=1e-9)
