"""Randomized defenses done right: EOT for every gradient attack, success by majority vote.

A model whose forward pass is randomized is broken on a sample only when most draws misclassify
the example; one lucky draw neither counts as a success nor takes the sample away from the later
attacks. The audit switches this on by itself when the determinism check finds randomness,
whatever the preset.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from attacks.base import majority_vote
from attacks.registry import get_attack
from robustness.audit import run_audit
from robustness.core.model import ModelUnderTest

EPS = 0.15
N = 40
ATTACKS = [
    {"name": "apgd-ce", "params": {"steps": 20}},
    {"name": "apgd-t", "params": {"steps": 20, "n_target_classes": 3}},
    {"name": "fab", "params": {"steps": 20, "n_target_classes": 3}},
    {"name": "square", "params": {"n_queries": 300}},
]


class NoiseShift(nn.Module):
    """A randomized defense: Gaussian noise on the input, then (half of the calls) a random shift of
    up to one pixel in each direction."""

    def __init__(self, net: nn.Module, sigma: float = 0.15, p_shift: float = 0.5) -> None:
        super().__init__()
        self.net, self.sigma, self.p_shift = net, sigma, p_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sigma * torch.randn_like(x)
        if float(torch.rand(1)) < self.p_shift:
            shift = torch.randint(-1, 2, (2,))
            x = torch.roll(x, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
        return self.net(x)


class Flaky(nn.Module):
    """The network's logits, except that on a share ``p`` of the draws each sample's prediction is
    moved to the next class: a lucky draw misclassifies anything, without any attack."""

    def __init__(self, net: nn.Module, p: float) -> None:
        super().__init__()
        self.net, self.p = net, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        flip = torch.rand(z.shape[0], device=z.device) < self.p
        bonus = nn.functional.one_hot((z.argmax(1) + 1) % z.shape[1], z.shape[1]) * 1000.0
        return z + flip[:, None] * bonus


def randomized(module: nn.Module, x: torch.Tensor, spec: str) -> ModelUnderTest:
    mut = ModelUnderTest(module, spec=spec, device="cpu")
    mut.validate(x)
    return mut


def test_majority_vote_counts_most_draws_not_one(digits_model, digits_small):
    x, y = digits_small.x[:60], digits_small.y[:60]
    clean = digits_model.predict(x) == y
    flaky = randomized(Flaky(copy.deepcopy(digits_model.module), 0.3), x, "flaky")
    pred, success, rate = majority_vote(flaky, x, y, votes=41, seed=0)
    # Each draw misclassifies a correct sample with probability 0.3: most draws do not.
    assert not success[clean].any()
    assert torch.equal(pred[clean], y[clean])
    assert 0.15 < float(rate[clean].mean()) < 0.45
    assert torch.equal(majority_vote(flaky, x, y, votes=41, seed=0)[2], rate)  # seeded
    # A share of 0.7 breaks them by majority, and the prediction is the wrong class.
    flakier = randomized(Flaky(copy.deepcopy(digits_model.module), 0.7), x, "flakier")
    pred, success, _ = majority_vote(flakier, x, y, votes=41, seed=0)
    assert success[clean].all() and (pred[clean] != y[clean]).all()


def test_a_lucky_draw_is_not_a_broken_sample(digits_model, digits_small):
    """At a tiny eps nothing can be broken: a single prediction still "finds" a fifth of the
    samples (the flaky draws), the majority of 20 finds none, and APGD's EOT does not stop on them."""
    x, y = digits_small.x[:60], digits_small.y[:60]
    keep = digits_model.predict(x) == y
    x, y = x[keep], y[keep]
    flaky = randomized(Flaky(copy.deepcopy(digits_model.module), 0.2), x, "flaky")
    torch.manual_seed(0)
    single = get_attack("apgd-ce", steps=5)(flaky, x, y, eps=1e-4)
    assert single.robust_accuracy < 0.95  # the flattering direction: lucky draws counted as breaks
    voted = get_attack("apgd-ce", steps=5, eot_iter=20)(flaky, x, y, eps=1e-4, votes=20)
    assert voted.robust_accuracy == 1.0 and voted.clean_accuracy == 1.0
    assert voted.n_forward >= 20 * x.shape[0]  # the votes are counted
    # The AutoAttack ensemble filters its members by the votes too.
    ensemble = get_attack("autoattack-fast", steps=3, n_queries=20)(flaky, x, y, eps=1e-4, votes=20)
    assert ensemble.robust_accuracy == 1.0


def test_audit_of_a_noise_and_shift_model_uses_eot_and_votes(digits_model, tmp_path):
    from robustness.core.data import load_data

    data = load_data("builtin:digits", n_examples=N, seed=0)
    net = copy.deepcopy(digits_model.module)
    mut = randomized(NoiseShift(net), data.x, "noise+shift")
    config = {
        "model": {"spec": "<noise+shift>", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": N, "batch_size": 64},
        "threat": {"norm": "linf", "eps": [EPS]},
        "attacks": ATTACKS,
        "sanity_checks": {"sample_size": 16},
        "output": {"dir": str(tmp_path), "formats": ["json"]},
    }
    res = run_audit(config, model=mut)
    audited = res["robust"][0]["accuracy"]
    assert res["eot_used"] is True and res["config"]["eot_samples"] == 20
    # APGD averages its own draws; FAB runs inside the EOT wrapper; Square is judged by the votes.
    names = [a["name"] for a in res["attacks"]]
    assert names == ["apgd-ce", "apgd-t", "eot(fab)", "square"]
    assert res["attacks"][0]["params"]["eot_iter"] == 20
    determinism = next(c for c in res["sanity_checks"] if c["name"] == "deterministic_forward")
    assert determinism["status"] == "pass" and "majority of 20 draws" in determinism["detail"]

    # Naive: the gradient attacks without EOT, judged by the same votes; the audit's number after
    # the same two attacks (with EOT); the truth: EOT-PGD on the margin loss with 20 draws.
    x, y = data.x, data.y
    alive = torch.ones(N, dtype=torch.bool)
    for spec in ATTACKS[:2]:
        alive &= ~get_attack(spec["name"], **spec["params"])(mut, x, y, eps=EPS, votes=20).success
    naive = float(alive.float().mean())
    with_eot = res["robust"][0]["per_attack"]["apgd-t"]
    truth = get_attack("eot", attack="pgd", attack_params={"steps": 50, "loss": "margin"}, eot_samples=20)(
        mut, x, y, eps=EPS, votes=20
    ).robust_accuracy
    # Measured: clean 0.975 (by vote), naive 0.35, with EOT 0.15, the whole audit 0.125, truth 0.175.
    assert with_eot <= naive - 0.15, (with_eot, naive)
    assert audited <= truth + 0.05 or res["verdict"] == "unreliable", (audited, truth)
    assert res["clean"]["accuracy"] >= 0.85


@pytest.mark.parametrize("votes", [0, -1, True, 2.0])
def test_votes_must_be_a_positive_integer(digits_model, digits_small, votes):
    from robustness.core.errors import AttackError

    with pytest.raises(AttackError, match="votes"):
        get_attack("fgsm")(digits_model, digits_small.x[:4], digits_small.y[:4], eps=0.1, votes=votes)
