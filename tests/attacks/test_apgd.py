"""APGD (apgd-ce, apgd-dlr, apgd-t): the published schedule, the DLR losses, and strength on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.apgd import apgd_checkpoints
from attacks.losses import dlr_loss
from attacks.registry import get_attack
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest
from robustness.core.threat import lp_norm

STEPS = 20  # the properties below do not depend on the full budget of 100


def run(name, model, data, eps, norm="linf", seed=0, **params):
    return get_attack(name, **params)(model, data.x, data.y, eps=eps, norm=norm, seed=seed)


def test_checkpoints_for_100_iterations_are_the_published_ones():
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("steps", [1, 5, 20, 37, 250])
def test_checkpoints_scale_with_the_budget(steps):
    w = apgd_checkpoints(steps)
    assert w[0] == 0 and w == sorted(set(w)) and w[-1] <= steps
    # ceil(p_j * steps) for p = 0, .22, .41, .57, .70, .80, .87, .93, .99
    expected = sorted({-(-p * steps // 100) for p in (0, 22, 41, 57, 70, 80, 87, 93, 99)})
    assert w == expected


def test_checkpoints_reject_a_zero_budget():
    with pytest.raises(AttackError):
        apgd_checkpoints(0)


@pytest.mark.parametrize("targeted", [False, True])
def test_dlr_is_invariant_to_scale_and_shift_of_the_logits(targeted):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 10, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    t = (y + torch.randint(1, 10, (64,), generator=g)) % 10 if targeted else None
    base = dlr_loss(z, y, t)
    for a, b in ((0.01, 0.0), (7.0, -3.0), (250.0, 12.5)):
        assert torch.allclose(dlr_loss(a * z + b, y, t), base, atol=1e-4)
    # It is a margin normalised by the spread of the top logits: sign follows the margin.
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    if not targeted:
        assert torch.equal(base > 0, other > z.gather(1, y[:, None]).squeeze(1))


def test_apgd_ce_not_weaker_than_pgd_at_equal_steps(digits_model, digits_small):
    apgd = run("apgd-ce", digits_model, digits_small, 0.1, steps=STEPS).robust_accuracy
    pgd = run("pgd", digits_model, digits_small, 0.1, steps=STEPS).robust_accuracy
    assert apgd <= pgd + 0.005, (apgd, pgd)
    assert 0.4 <= apgd <= 0.65  # the digits calibration: ~0.56 at eps 0.1


def test_apgd_ce_l2_not_weaker_than_pgd_l2(digits_model, digits_small):
    apgd = run("apgd-ce", digits_model, digits_small, 0.5, norm="l2", steps=STEPS)
    pgd = run("pgd", digits_model, digits_small, 0.5, norm="l2", steps=STEPS)
    assert apgd.robust_accuracy <= pgd.robust_accuracy + 0.005
    assert apgd.robust_accuracy < apgd.clean_accuracy - 0.2
    assert float(apgd.perturbation_norm.max()) <= 0.5 + 1e-4


def test_apgd_t_not_weaker_than_apgd_ce(digits_model, digits_small):
    ce = run("apgd-ce", digits_model, digits_small, 0.1, steps=STEPS)
    t = run("apgd-t", digits_model, digits_small, 0.1, steps=STEPS)
    assert t.robust_accuracy <= ce.robust_accuracy + 0.02, (t.robust_accuracy, ce.robust_accuracy)
    # Untargeted success: any misclassification counts, and it is observed, not assumed.
    assert t.targets is None and bool((t.adv_pred[t.success] != t.y[t.success]).all())


def test_apgd_dlr_breaks_most_points_at_eps_02(digits_model, digits_small):
    r = run("apgd-dlr", digits_model, digits_small, 0.2, steps=STEPS)
    assert r.robust_accuracy <= 0.05


def test_eps_grid_is_monotone_and_reaches_zero(digits_model, digits_small):
    res = run("apgd-ce", digits_model, digits_small, [0.05, 0.1, 0.2, 0.3], steps=STEPS)
    acc = [r.robust_accuracy for r in res]
    assert all(b <= a for a, b in zip(acc, acc[1:])), acc
    assert acc[0] >= 0.8 and acc[-1] == 0.0, acc


@pytest.mark.parametrize("name", ["apgd-ce", "apgd-t"])
def test_reproducible_with_a_seed(name, digits_model, digits_small):
    a = run(
        name,
        digits_model,
        digits_small,
        0.1,
        seed=5,
        steps=10,
        **({"n_target_classes": 2} if name == "apgd-t" else {}),
    )
    b = run(
        name,
        digits_model,
        digits_small,
        0.1,
        seed=5,
        steps=10,
        **({"n_target_classes": 2} if name == "apgd-t" else {}),
    )
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


def test_targeted_apgd_ce_reaches_the_given_targets(digits_model, digits_small):
    r = get_attack("apgd-ce", steps=STEPS)(
        digits_model, digits_small.x, digits_small.y, eps=0.3, targeted="random", seed=0
    )
    assert r.targets is not None
    assert bool((r.adv_pred[r.success] == r.targets[r.success]).all())
    assert r.success.float().mean() >= 0.9


def test_apgd_t_caps_targets_and_rejects_caller_targets(digits_model, digits_small):
    small = digits_small.subset(range(20))
    r = get_attack("apgd-t", steps=5, n_target_classes=50)(digits_model, small.x, small.y, eps=0.2)
    assert r.robust_accuracy <= 0.2
    with pytest.raises(AttackError):
        get_attack("apgd-t")(digits_model, small.x, small.y, eps=0.1, targeted="random")


def test_dlr_attacks_refuse_models_with_too_few_classes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    model = ModelUnderTest(net, spec="three-classes", device="cpu")
    x = torch.rand(8, 1, 8, 8)
    y = model.predict(x)
    with pytest.raises(AttackError, match="at least 4 classes"):
        get_attack("apgd-t", steps=3)(model, x, y, eps=0.1)
    # CE has no such limit.
    r = get_attack("apgd-ce", steps=3)(model, x, y, eps=0.1)
    assert float(lp_norm(r.x_adv - x, "linf").max()) <= 0.1 + 1e-6


@pytest.mark.parametrize(
    "params", [{"steps": 0}, {"restarts": 0}, {"rho": 0.0}, {"rho": 1.5}, {"eot_iter": 0}, {"bogus": 1}]
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(AttackError):
        get_attack("apgd-ce", **params)


def test_more_restarts_never_hurt(digits_model, digits_small):
    one = run("apgd-ce", digits_model, digits_small, 0.1, steps=10, restarts=1)
    three = run("apgd-ce", digits_model, digits_small, 0.1, steps=10, restarts=3)
    # Restarts only attack samples still robust, so the first restart's successes are kept.
    assert bool((three.success | ~one.success).all())
    assert three.robust_accuracy <= one.robust_accuracy
