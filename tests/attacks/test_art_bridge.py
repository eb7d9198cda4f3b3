"""The ART bridge: any ART evasion attack by name, judged by our base class, with clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("art")

from attacks.registry import available, get_attack  # noqa: E402
from robustness.core.errors import AttackError  # noqa: E402

HSJ = {"max_iter": 3, "max_eval": 100, "init_eval": 10}


@pytest.fixture(scope="module")
def few(digits_small):
    return digits_small.x[:16], digits_small.y[:16]


def test_art_is_not_imported_with_the_attack_library():
    code = "import sys, attacks; attacks.available(); print('art' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bridge_is_resolved_on_demand_not_registered():
    assert not any(name.startswith("art") for name in available())
    attack = get_attack("art:HopSkipJump", **HSJ)
    assert attack.name == "art:HopSkipJump"
    assert attack.kind == "black-box" and attack.supports_targeted
    assert attack.params == {"art_class": "HopSkipJump", **HSJ}
    assert get_attack("art:FastGradientMethod").kind == "white-box"


def test_fast_gradient_method_matches_our_fgsm(digits_model, few):
    x, y = few
    art = get_attack("art:FastGradientMethod")(digits_model, x, y, eps=0.1)
    ours = get_attack("fgsm")(digits_model, x, y, eps=0.1)
    # Same algorithm: eps and norm reached ART; the base projected and re-predicted.
    assert abs(art.robust_accuracy - ours.robust_accuracy) <= 1 / 16
    assert float(art.perturbation_norm.max()) == pytest.approx(0.1, abs=1e-6)
    assert art.n_backward > 0 and art.n_queries == 0


def test_hop_skip_jump_is_judged_inside_the_ball(digits_model, few):
    x, y = few
    attack = get_attack("art:HopSkipJump", **HSJ)
    r = attack(digits_model, x, y, eps=2.0, norm="l2", seed=0)
    # HopSkipJump ignores eps; whatever it returns is projected onto the l2 ball and re-predicted.
    assert float(r.perturbation_norm.max()) <= 2.0 + 1e-5
    assert torch.equal(r.success, r.adv_pred != r.y)
    assert r.robust_accuracy <= r.clean_accuracy - 0.5  # measured 0.0 on 20 samples with max_iter 5
    # Black-box through the counted model: queries, no gradients.
    assert r.n_backward == 0 and r.n_queries == r.n_forward > 100
    # ART's numpy randomness (including its unseeded RandomState) is seeded from ours.
    again = attack(digits_model, x, y, eps=2.0, norm="l2", seed=0)
    assert torch.equal(r.x_adv, again.x_adv)


def test_simba_gets_probabilities(digits_model, few):
    x, y = few
    r = get_attack("art:SimBA", max_iter=200, epsilon=0.2)(digits_model, x, y, eps=2.0, norm="l2")
    assert r.robust_accuracy <= 0.3  # measured 0.0 on 20 samples
    assert r.n_backward == 0


def test_unknown_and_wrong_kinds_of_class():
    with pytest.raises(AttackError, match="no evasion attack called 'Nope'") as info:
        get_attack("art:Nope")
    assert "HopSkipJump" in str(info.value)
    with pytest.raises(AttackError, match="extraction attack, not an evasion attack"):
        get_attack("art:CopycatCNN")
    with pytest.raises(AttackError, match="not an ART evasion attack class"):
        get_attack("art:deepfool")  # a module, not a class


def test_bad_keywords_and_values(digits_model, few):
    x, y = few
    with pytest.raises(AttackError, match="does not take max_itr") as info:
        get_attack("art:HopSkipJump", max_itr=3)
    assert "max_iter" in str(info.value)
    with pytest.raises(AttackError, match="targeted"):
        get_attack("art:HopSkipJump", targeted=True)
    # HopSkipJump has no l1 version: ART's own check becomes a clear error.
    with pytest.raises(AttackError, match="rejected its parameters"):
        get_attack("art:HopSkipJump", **HSJ)(digits_model, x, y, eps=3.0, norm="l1")
    with pytest.raises(AttackError, match="does not work on a PyTorch classifier"):
        get_attack("art:DecisionTreeAttack")(digits_model, x, y, eps=0.1)
