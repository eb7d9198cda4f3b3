"""The unforgivable failure: a masked model must never get `pass` with a flattering number.

Each test audits a model whose gradients are masked and compares the audit's robust
accuracy with what a strong attack that sees through the masking finds (a margin-loss PGD
on the logits, or BPDA through the rounding). The audit must either report a number no
higher than that (plus a small tolerance for attack randomness) or the verdict
``unreliable``; a ``pass`` above the truth fails the test.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustness.audit import run_audit
from robustness.core.model import ModelUnderTest

EPS = 0.15
N = 30
TOL = 0.05


class Softmaxed(nn.Module):
    """Probabilities of a high-temperature softmax (saturated to exactly 0/1 in float32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(100 * self.net(x), dim=1)


class Rounded(nn.Module):
    """Inputs rounded to 4 levels before the network (zero gradients almost everywhere)."""

    def __init__(self, net: nn.Module, levels: int = 4) -> None:
        super().__init__()
        self.net = net
        self.q = levels - 1

    def forward(self, x):
        return self.net(torch.round(x * self.q) / self.q)


class StraightThrough(Rounded):
    """BPDA surrogate: the same forward pass, the identity as the rounding's gradient."""

    def forward(self, x):
        xq = torch.round(x * self.q) / self.q
        return self.net(x + (xq - x).detach())


class Distilled(nn.Module):
    """Logits multiplied by T = 100, as a defensively distilled network's are: a saturating softmax."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return 100 * self.net(x)


def margin_pgd(attack_net: nn.Module, eval_net: nn.Module, x, y, eps=EPS, steps=100, restarts=3, seed=0):
    """Reference strong attack: linf PGD on the margin loss of ``attack_net``'s outputs, success judged
    by re-predicting with ``eval_net``. Returns the robust accuracy (per-sample worst case)."""
    g = torch.Generator().manual_seed(seed)
    robust = torch.ones(len(y), dtype=torch.bool)
    for p in list(attack_net.parameters()) + list(eval_net.parameters()):
        p.requires_grad_(False)
    for r in range(restarts):
        delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps if r else torch.zeros_like(x)
        xa = (x + delta).clamp(0, 1)
        for _ in range(steps):
            xa.requires_grad_(True)
            z = attack_net(xa)
            zy = z.gather(1, y[:, None]).squeeze(1)
            other = z.scatter(1, y[:, None], float("-inf")).amax(1)
            (grad,) = torch.autograd.grad((other - zy).sum(), xa)
            with torch.no_grad():
                xa = xa + 2.5 * eps / steps * 4 * grad.sign()
                xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
                robust &= eval_net(xa).argmax(1) == y
    return robust.float().mean().item()


def masked_config(tmp_path, attacks=None, waive=None) -> dict:
    return {
        "model": {"spec": "<masked>", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": N, "batch_size": 32},
        "threat": {"norm": "linf", "eps": [EPS]},
        "attacks": attacks
        or [
            {"name": "apgd-ce", "params": {"steps": 20}},
            {"name": "apgd-t", "params": {"steps": 20, "n_target_classes": 3}},
            {"name": "square", "params": {"n_queries": 300}},
        ],
        "sanity_checks": {"sample_size": 16, **({"waive": waive} if waive else {})},
        # A gate that a flattering number would pass (the honest number is far lower).
        "gates": {"min_robust_accuracy": {EPS: 0.5}, "judge": "point"},
        "output": {"dir": str(tmp_path), "formats": ["json"]},
    }


@pytest.fixture(scope="module")
def data():
    from robustness.core.data import load_data

    return load_data("builtin:digits", n_examples=N, seed=0)


def honest(res, truth: float) -> bool:
    """The audit's promise: unreliable, or a robust accuracy no higher than the truth (+ tolerance)."""
    return res["verdict"] == "unreliable" or res["robust"][0]["accuracy"] <= truth + TOL


def check_status(res, name):
    return next(c for c in res["sanity_checks"] if c["name"] == name)["status"]


def test_softmax_probabilities_at_high_temperature(digits_model, data, tmp_path):
    net = copy.deepcopy(digits_model.module)  # margin_pgd freezes it; keep the shared model intact
    truth = margin_pgd(net, net, data.x, data.y)  # same decisions as the logits
    mut = ModelUnderTest(Softmaxed(net), spec="softmax(100*logits)", device="cpu")
    with pytest.warns(UserWarning, match="probabilities"):
        res = run_audit(masked_config(tmp_path / "a"), model=mut)
    assert truth < 0.5
    assert honest(res, truth), (res["verdict"], res["robust"][0]["accuracy"], truth)
    assert res["verdict"] == "unreliable"
    assert check_status(res, "outputs_logits") == "fail"
    # Waiving the logits check does not buy a pass: the gradients are still masked.
    mut2 = ModelUnderTest(Softmaxed(net), spec="softmax(100*logits)", device="cpu")
    with pytest.warns(UserWarning):
        res2 = run_audit(
            masked_config(tmp_path / "b", waive={"outputs_logits": "the API serves probabilities"}),
            model=mut2,
        )
    assert honest(res2, truth), (res2["verdict"], res2["robust"][0]["accuracy"], truth)
    assert check_status(res2, "outputs_logits") == "waived"


def test_inputs_rounded_to_four_levels(digits_model, data, tmp_path):
    net = copy.deepcopy(digits_model.module)  # margin_pgd freezes it; keep the shared model intact
    masked = Rounded(net)
    truth = margin_pgd(StraightThrough(net), masked, data.x, data.y)  # BPDA
    res = run_audit(masked_config(tmp_path / "a"), model=ModelUnderTest(masked, spec="round4", device="cpu"))
    assert honest(res, truth), (res["verdict"], res["robust"][0]["accuracy"], truth)
    assert res["verdict"] == "unreliable"
    assert check_status(res, "gradients_nonzero") == "fail"
    # Even with the gradient check waived, another check (or the black-box attacks) must catch it.
    res2 = run_audit(
        masked_config(tmp_path / "b", waive={"gradients_nonzero": "we claim the rounding is a defense"}),
        model=ModelUnderTest(Rounded(net), spec="round4", device="cpu"),
    )
    assert honest(res2, truth), (res2["verdict"], res2["robust"][0]["accuracy"], truth)


def test_distilled_logits_are_evaluated_correctly(digits_model, data, tmp_path):
    """Huge logits (T = 100): cross-entropy gradients vanish, DLR/margin losses do not. The audit must
    find the same robust accuracy as on the undistilled logits (the decisions are identical)."""
    net = copy.deepcopy(digits_model.module)  # margin_pgd freezes it; keep the shared model intact
    truth = margin_pgd(net, net, data.x, data.y)
    res = run_audit(
        masked_config(tmp_path / "a"), model=ModelUnderTest(Distilled(net), spec="T100", device="cpu")
    )
    acc = res["robust"][0]["accuracy"]
    assert acc <= truth + TOL, (acc, truth)
    grads = next(c for c in res["sanity_checks"] if c["name"] == "gradients_nonzero")
    assert grads["status"] == "pass" and grads["measured"]["zero_cross_entropy"] > 0
    assert "saturates" in grads["detail"]
    # APGD-CE is blinded by the saturated softmax; the targeted DLR attack does the work.
    per = res["robust"][0]["per_attack"]
    assert per["apgd-t"] <= truth + TOL
    # The evaluation works, so it is not flagged: the honest number simply fails the 0.5 gate.
    assert res["verdict"] == "fail", [(c["name"], c["status"]) for c in res["sanity_checks"]]
