"""Square Attack: the published schedule and update pattern, strength on digits, black-box accounting."""

from __future__ import annotations

import pytest
import torch

from attacks.registry import get_attack
from attacks.square import p_selection, pseudo_gaussian
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest


def test_p_schedule_matches_the_paper_rescaled_to_the_budget():
    # The published schedule for 10,000 iterations: p_init halves at 10, 50, 200, 500, 1000, 2000, ...
    assert p_selection(0.8, 0, 10_000) == 0.8
    assert p_selection(0.8, 10, 10_000) == 0.8
    assert p_selection(0.8, 11, 10_000) == 0.4
    assert p_selection(0.8, 51, 10_000) == 0.2
    assert p_selection(0.8, 201, 10_000) == 0.1
    assert p_selection(0.8, 1001, 10_000) == pytest.approx(0.8 / 32)
    assert p_selection(0.8, 8001, 10_000) == pytest.approx(0.8 / 512)
    # AutoAttack rescales it to the budget: with 5000 queries the first halving is after iteration 5.
    assert p_selection(0.8, 5, 5000) == 0.8
    assert p_selection(0.8, 6, 5000) == 0.4
    assert p_selection(0.8, 4999, 5000) == pytest.approx(0.8 / 512)


def test_pseudo_gaussian_pattern():
    for s in (1, 3, 5, 7):
        eta = pseudo_gaussian(s, torch.device("cpu"))
        assert eta.shape == (s, s)
        assert float(eta.norm()) == pytest.approx(1.0, abs=1e-5)
    eta = pseudo_gaussian(7, torch.device("cpu"))
    top, bottom = eta[:3], eta[3:]
    assert bool((top > 0).all()) and bool((bottom < 0).all())
    # Mass concentrates at the centre of each half.
    assert float(top[1, 3]) == float(top.max())
    assert float(bottom.abs()[2, 3]) == float(bottom.abs().max())


def test_square_linf_breaks_most_samples(digits_model, digits_small):
    x, y = digits_small.x, digits_small.y
    r = get_attack("square", n_queries=1000)(digits_model, x, y, eps=0.2, norm="linf", seed=0)
    # Measured: 0.99 clean -> 0.01 (PGD-50: 0.02).
    assert r.clean_accuracy >= 0.97
    assert r.robust_accuracy <= 0.05
    assert float(r.perturbation_norm.max()) <= 0.2 + 1e-6
    # Black-box: no backward pass; queries are the forward passes and stop once a sample breaks
    # (far below 100 samples x 1001 queries).
    assert r.n_backward == 0
    assert r.n_queries == r.n_forward
    assert 100 < r.n_queries < 15_000


def test_square_l2(digits_model, digits_small):
    x, y = digits_small.x, digits_small.y
    r = get_attack("square", n_queries=300)(digits_model, x, y, eps=2.0, norm="l2", seed=0)
    assert r.robust_accuracy <= 0.05
    assert float(r.perturbation_norm.max()) <= 2.0 + 1e-5


def test_square_no_weaker_than_torchattacks_square(digits_model, digits_small):
    """Same budget as torchattacks' port of the reference code; ours must not be weaker."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_small.x[:60], digits_small.y[:60]
    ours = get_attack("square", n_queries=300)(digits_model, x, y, eps=1.0, norm="l2", seed=0)
    theirs = torchattacks.Square(digits_model.net, norm="L2", eps=1.0, n_queries=300, n_restarts=1, seed=0)
    with digits_model.evaluating():
        x_adv = theirs(x, y)
        theirs_acc = float((digits_model.net(x_adv).argmax(1) == y).float().mean())
    assert ours.robust_accuracy <= theirs_acc + 0.02, (ours.robust_accuracy, theirs_acc)


def test_square_targeted(digits_model, digits_small):
    x, y = digits_small.x[:40], digits_small.y[:40]
    r = get_attack("square", n_queries=500)(
        digits_model, x, y, eps=0.3, norm="linf", seed=0, targeted="random"
    )
    reached = (r.adv_pred == r.targets).float().mean()
    assert float(reached) >= 0.8
    assert torch.equal(r.success, r.adv_pred == r.targets)


def test_square_restarts_only_attack_unbroken(digits_model, digits_small):
    x, y = digits_small.x[:50], digits_small.y[:50]
    one = get_attack("square", n_queries=20)(digits_model, x, y, eps=0.1, norm="linf", seed=0)
    two = get_attack("square", n_queries=20, restarts=2)(digits_model, x, y, eps=0.1, norm="linf", seed=0)
    assert two.robust_accuracy <= one.robust_accuracy
    # The second restart costs queries only for the samples the first one left standing.
    assert two.n_queries - one.n_queries <= int(one.robust.sum()) * 21


def test_square_needs_images_and_valid_params(digits_model):
    flat = ModelUnderTest(torch.nn.Linear(4, 3), device="cpu")
    xf = torch.rand(4, 4)
    with pytest.raises(AttackError, match="N x C x H x W"):
        get_attack("square", n_queries=5)(flat, xf, flat.predict(xf), eps=0.1)
    with pytest.raises(AttackError, match="p_init"):
        get_attack("square", p_init=1.5)
    with pytest.raises(AttackError, match="n_queries"):
        get_attack("square", n_queries=0)
    with pytest.raises(AttackError, match="norm"):
        get_attack("square")(
            digits_model, torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), eps=1.0, norm="l1"
        )
