"""FAB-T: the hyperplane-and-box projection is exact, and the attack finds minimal adversarials on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

from attacks.fab import project_on_hyperplane_box
from attacks.registry import get_attack
from robustness.core.errors import AttackError


def run(name, model, data, eps, norm="linf", seed=0, **params):
    return get_attack(name, **params)(model, data.x, data.y, eps=eps, norm=norm, seed=seed)


def _instances(n_rows=24, dim=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n_rows, dim, generator=g, dtype=torch.float64)
    p[0, :2] = torch.tensor([0.0, 1.0], dtype=torch.float64)  # points on the bounds
    w = torch.randn(n_rows, dim, generator=g, dtype=torch.float64)
    w[1, :4] = 0.0  # coordinates that do not move the hyperplane value
    r = torch.randn(n_rows, generator=g, dtype=torch.float64) * 0.7
    r[2] = 0.0  # already on the hyperplane
    return p, w, r


def _optimum(p, w, r, norm):
    lo, hi = -p, 1 - p
    n = p.shape[0]
    if norm == "linf":
        a_ub = np.vstack([np.c_[np.eye(n), -np.ones(n)], np.c_[-np.eye(n), -np.ones(n)]])
        res = linprog(
            np.r_[np.zeros(n), 1.0],
            A_ub=a_ub,
            b_ub=np.zeros(2 * n),
            A_eq=np.r_[w, 0.0][None],
            b_eq=[r],
            bounds=[(lo[j], hi[j]) for j in range(n)] + [(0, None)],
        )
        return res.fun
    res = minimize(
        lambda v: v @ v,
        np.zeros(n),
        constraints=[{"type": "eq", "fun": lambda v: w @ v - r}],
        bounds=list(zip(lo, hi)),
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return float(np.sqrt(res.fun))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_the_minimal_norm_point_on_the_plane_inside_the_box(norm):
    p, w, r = _instances()
    d = project_on_hyperplane_box(p, w, r, 0.0, 1.0, norm)
    checked = 0
    for i in range(p.shape[0]):
        pi, wi, ri, di = p[i].numpy(), w[i].numpy(), float(r[i]), d[i].numpy()
        assert np.all(pi + di >= -1e-12) and np.all(pi + di <= 1 + 1e-12)
        reach_hi = np.sum(np.where(wi > 0, wi * (1 - pi), -wi * pi))
        reach_lo = -np.sum(np.where(wi > 0, wi * pi, -wi * (1 - pi)))
        if not reach_lo <= ri <= reach_hi:
            # Unreachable: every coordinate goes to the bound that moves towards the plane.
            assert abs(wi @ di) == pytest.approx(
                max(abs(reach_lo), abs(reach_hi)) if ri > 0 else abs(reach_lo)
            )
            continue
        assert wi @ di == pytest.approx(ri, abs=1e-9)
        mine = np.abs(di).max() if norm == "linf" else np.linalg.norm(di)
        assert mine == pytest.approx(_optimum(pi, wi, ri, norm), abs=1e-7)
        checked += 1
    assert checked >= 20


def test_fab_is_close_to_apgd_at_eps_01_and_breaks_everything_at_03(digits_model, digits_small):
    fab = run("fab", digits_model, digits_small, [0.1, 0.3], steps=20, n_target_classes=3)
    apgd = run("apgd-ce", digits_model, digits_small, 0.1, steps=20)
    assert abs(fab[0].robust_accuracy - apgd.robust_accuracy) <= 0.05, (
        fab[0].robust_accuracy,
        apgd.robust_accuracy,
    )
    assert fab[1].robust_accuracy == 0.0
    assert bool((fab[0].perturbation_norm <= 0.1 + 1e-6).all())


def test_fab_l2_finds_adversarials(digits_model, digits_small):
    fab = run("fab", digits_model, digits_small, 0.5, norm="l2", steps=20, n_target_classes=3)
    apgd = run("apgd-ce", digits_model, digits_small, 0.5, norm="l2", steps=20)
    assert fab.robust_accuracy <= apgd.robust_accuracy + 0.05, (fab.robust_accuracy, apgd.robust_accuracy)
    assert fab.robust_accuracy < fab.clean_accuracy - 0.2


def test_minimal_adversarials_beyond_eps_do_not_count(digits_model, digits_small):
    """FAB finds minimal adversarials mostly far outside a tiny ball: they must not count as successes."""
    r = run("fab", digits_model, digits_small, 0.002, steps=10, n_target_classes=2)
    assert r.robust_accuracy >= r.clean_accuracy - 0.02
    assert bool((r.perturbation_norm <= 0.002 + 1e-6).all())
    assert torch.equal(r.success, digits_model.predict(r.x_adv) != r.y)


def test_fab_reproducible_with_a_seed(digits_model, digits_small):
    small = digits_small.subset(range(40))
    a = run("fab", digits_model, small, 0.1, seed=3, steps=10, n_target_classes=2, restarts=2)
    b = run("fab", digits_model, small, 0.1, seed=3, steps=10, n_target_classes=2, restarts=2)
    assert torch.equal(a.x_adv, b.x_adv)


def test_random_restarts_never_hurt(digits_model, digits_small):
    one = run("fab", digits_model, digits_small, 0.1, steps=10, n_target_classes=2, restarts=1)
    two = run("fab", digits_model, digits_small, 0.1, steps=10, n_target_classes=2, restarts=2)
    assert bool((two.success | ~one.success).all())


@pytest.mark.parametrize(
    "params", [{"steps": 0}, {"n_target_classes": 0}, {"alpha_max": 2.0}, {"eta": 0.5}, {"beta": 1.0}]
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(AttackError):
        get_attack("fab", **params)


def test_fab_has_no_caller_targets_and_no_l1(digits_model, digits_small):
    small = digits_small.subset(range(4))
    with pytest.raises(AttackError):
        get_attack("fab")(digits_model, small.x, small.y, eps=0.1, targeted="random")
    with pytest.raises(AttackError):
        get_attack("fab")(digits_model, small.x, small.y, eps=1.0, norm="l1")
