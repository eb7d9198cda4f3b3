"""Random noise (the sanity-check baseline) and the transfer attack from an independent surrogate."""

from __future__ import annotations

import pytest
import torch

from attacks.registry import get_attack
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest
from robustness.core.threat import lp_norm


@pytest.fixture(scope="module")
def surrogate():
    """A second DigitsCNN, seeded differently and trained briefly (about 97% clean accuracy)."""
    from robustness.zoo import train_digits_cnn

    return ModelUnderTest(train_digits_cnn(seed=1, epochs=5), spec="digits-cnn-seed1", device="cpu")


@pytest.fixture(scope="module")
def pgd_linf(digits_model, digits_small):
    return get_attack("pgd")(digits_model, digits_small.x, digits_small.y, eps=[0.1, 0.2], norm="linf")


def test_noise_is_much_weaker_than_pgd(digits_model, digits_small, pgd_linf):
    res = get_attack("noise")(digits_model, digits_small.x, digits_small.y, eps=[0.1, 0.2], norm="linf")
    # Measured: noise 0.86 / 0.51, PGD-20 0.59 / 0.02.
    for r, p in zip(res, pgd_linf):
        assert r.robust_accuracy >= p.robust_accuracy + 0.15, (r.eps, r.robust_accuracy, p.robust_accuracy)
        assert r.n_backward == 0 and r.n_queries == r.n_forward
    # ... but it is a real attack: at eps 0.2 it breaks a good share of the samples.
    assert res[1].robust_accuracy <= 0.7
    assert res[1].robust_accuracy < res[0].robust_accuracy


def test_noise_corners_are_at_full_eps(digits_model, digits_small):
    x, y = digits_small.x, digits_small.y
    r = get_attack("noise", n_samples=0, n_corners=50)(digits_model, x, y, eps=0.2, norm="linf")
    hit = r.success & (r.clean_pred == y)
    assert int(hit.sum()) > 10
    delta = (r.x_adv - x)[hit].flatten(1)
    # Every coordinate moved by exactly eps, unless the bounds clipped it (then it sits at a bound).
    adv = r.x_adv[hit].flatten(1)
    at_eps = (delta.abs() - 0.2).abs() < 1e-6
    at_bound = (adv == 0) | (adv == 1)
    assert bool((at_eps | at_bound).all())
    assert float(at_eps.float().mean()) > 0.3


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("l1", 3.0)])
def test_noise_other_norms(digits_model, digits_small, norm, eps):
    r = get_attack("noise", n_samples=30, n_corners=30)(
        digits_model, digits_small.x, digits_small.y, eps=eps, norm=norm
    )
    assert r.robust_accuracy < r.clean_accuracy  # measured 0.80 (l2 1.0) and 0.78 (l1 3.0) with 100+100 draws
    assert float(lp_norm(r.x_adv - digits_small.x, norm).max()) <= eps * (1 + 1e-5)


def test_noise_keeps_the_first_adversarial_draw(digits_model, digits_small):
    """Stopping at the first hit: a larger budget never changes an example that was already found."""
    x, y = digits_small.x, digits_small.y
    few = get_attack("noise", n_samples=0, n_corners=5)(digits_model, x, y, eps=0.2, seed=3)
    many = get_attack("noise", n_samples=0, n_corners=40)(digits_model, x, y, eps=0.2, seed=3)
    assert many.robust_accuracy <= few.robust_accuracy
    found = few.success
    assert torch.equal(few.x_adv[found], many.x_adv[found])


def test_transfer_from_an_independent_surrogate(digits_model, digits_small, surrogate, pgd_linf):
    x, y = digits_small.x, digits_small.y
    noise = get_attack("noise")(digits_model, x, y, eps=0.2)
    r = get_attack("transfer", surrogate=surrogate)(digits_model, x, y, eps=0.2)
    # Measured: transfer 0.12, white-box PGD 0.02, noise 0.51, clean 0.99: partial transfer.
    assert pgd_linf[1].robust_accuracy <= r.robust_accuracy <= noise.robust_accuracy - 0.2
    assert r.robust_accuracy <= r.clean_accuracy - 0.5
    # Black-box w.r.t. the target: only the final re-prediction of each sample queries it.
    assert r.n_backward == 0
    assert r.n_queries == r.n_forward <= x.shape[0]


def test_transfer_full_budget_beats_stopping_at_the_surrogates_boundary(
    digits_model, digits_small, surrogate
):
    x, y = digits_small.x, digits_small.y
    full = get_attack("transfer", surrogate=surrogate)(digits_model, x, y, eps=0.1)
    early = get_attack("transfer", surrogate=surrogate, maximize=False)(digits_model, x, y, eps=0.1)
    # Measured: 0.73 vs 0.94: barely-adversarial examples do not transfer.
    assert full.robust_accuracy <= early.robust_accuracy - 0.1


def test_transfer_surrogate_forms_and_errors(digits_model, digits_small, surrogate):
    x, y = digits_small.x[:20], digits_small.y[:20]
    # A spec string and a bare module work too (the zoo model as its own surrogate is white-box PGD).
    by_spec = get_attack("transfer", surrogate="zoo:digits-cnn")(digits_model, x, y, eps=0.2)
    assert by_spec.robust_accuracy <= 0.1
    by_module = get_attack("transfer", surrogate=surrogate.module, attack="fgsm")(digits_model, x, y, eps=0.2)
    assert by_module.params["surrogate"] == "<DigitsCNN>" and by_module.params["attack"] == "fgsm"
    with pytest.raises(AttackError, match="surrogate"):
        get_attack("transfer")
    with pytest.raises(AttackError, match="unknown attack"):
        get_attack("transfer", surrogate="zoo:digits-cnn", attack="nope")
    with pytest.raises(AttackError, match="norm"):
        get_attack("transfer", surrogate="zoo:digits-cnn", attack="cw-l2")(
            digits_model, x, y, eps=0.1, norm="linf"
        )
    wrong = ModelUnderTest(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), device="cpu")
    with pytest.raises(AttackError, match="classes"):
        get_attack("transfer", surrogate=wrong)(digits_model, x, y, eps=0.1)
