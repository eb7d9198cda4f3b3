"""Sanity checks: the model checks on real models, and the judgments on real-looking numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness.audit.check import CheckResult, allowed
from robustness.audit.checks import (
    black_box_not_stronger,
    deterministic_forward,
    gradients_nonzero,
    iterative_beats_single_step,
    large_eps_breaks_all,
    monotonic_in_eps,
    more_iterations_no_gain,
    outputs_logits,
)
from robustness.core.model import ModelUnderTest


class Rounded(nn.Module):
    """Inputs rounded to 4 levels before the network: zero gradients almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


class NoisyEval(nn.Module):
    """Dropout that stays on in eval mode: a randomized forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(nn.functional.dropout(x, 0.3, training=True))


class Softmaxed(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(100 * self.net(x), dim=1)


def wrap(module, x):
    m = ModelUnderTest(module, device="cpu")
    m.validate(x)
    return m


def test_model_checks_pass_on_the_demo_model(digits_model, digits_small):
    x, y = digits_small.x[:32], digits_small.y[:32]
    near = (x + 0.05 * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    g = gradients_nonzero.measure(digits_model, x, y, near)
    assert g.status == "pass" and g.measured["zero_at_clean"] == 0 and g.measured["nonfinite"] == 0
    assert g.measured["median_grad_l1"] > 0
    assert deterministic_forward.measure(digits_model, x, eot_used=False).status == "pass"
    assert outputs_logits.measure(digits_model).status == "pass"


def test_rounding_model_has_zero_gradients(digits_model, digits_small):
    x, y = digits_small.x[:32], digits_small.y[:32]
    m = wrap(Rounded(digits_model.module), x)
    g = gradients_nonzero.measure(m, x, y, x)
    assert g.status == "fail"
    assert g.measured["zero_at_clean"] == 32
    assert "BPDA" in g.detail


def test_softmax_model_is_flagged_and_its_ce_gradients_vanish(digits_model, digits_small):
    x, y = digits_small.x[:32], digits_small.y[:32]
    with pytest.warns(UserWarning, match="look like probabilities"):
        m = wrap(Softmaxed(digits_model.module), x)
    assert m.outputs_probabilities
    h = outputs_logits.measure(m)
    assert h.status == "fail" and "probabilities" in h.detail
    assert gradients_nonzero.measure(m, x, y, x).status == "fail"


def test_randomized_model_fails_determinism_unless_eot(digits_model, digits_small):
    x = digits_small.x[:32]
    m = wrap(NoisyEval(digits_model.module), x)
    r = deterministic_forward.measure(m, x, eot_used=False)
    assert r.status == "fail" and r.measured["randomized"] and "use EOT" in r.detail
    assert r.measured["max_abs_diff"] > 1e-3
    assert deterministic_forward.measure(m, x, eot_used=True).status == "pass"


def test_allowed_tolerance():
    assert allowed(0, 0.02) == 0
    assert allowed(10, 0.02) == 1
    assert allowed(64, 0.02) == 1
    assert allowed(200, 0.02) == 4


def test_iterative_check_judges_fgsm_extras():
    ok = [{"eps": 0.1, "n_attacked": 100, "fgsm_robust": 70, "iterative_robust": 50, "extra": 1}]
    assert iterative_beats_single_step.judge(ok, 0.02).status == "pass"
    bad = [{"eps": 0.1, "n_attacked": 100, "fgsm_robust": 40, "iterative_robust": 50, "extra": 12}]
    r = iterative_beats_single_step.judge(bad, 0.02)
    assert r.status == "fail" and "eps 0.1" in r.detail
    none = [{"eps": 0.1, "n_attacked": 100, "fgsm_robust": 40, "iterative_robust": None, "extra": 0}]
    assert iterative_beats_single_step.judge(none, 0.02).status == "skip"


def test_monotonic_check():
    rows = [{"eps": 0.1, "n_tested": 30, "n_not_broken": 0}]
    assert monotonic_in_eps.judge([0.05, 0.1], [0.9, 0.5], rows, 0.02).status == "pass"
    assert monotonic_in_eps.judge([0.05, 0.1], [0.5, 0.6], rows, 0.02).status == "fail"
    unstable = [{"eps": 0.1, "n_tested": 30, "n_not_broken": 5}]
    assert monotonic_in_eps.judge([0.05, 0.1], [0.9, 0.5], unstable, 0.02).status == "fail"
    assert monotonic_in_eps.judge([0.1], [0.5], [], 0.02).status == "skip"


def test_large_eps_black_box_and_more_iterations_checks():
    assert large_eps_breaks_all.judge(0.5, "apgd-ce", 64, 1, 0.02).status == "pass"
    r = large_eps_breaks_all.judge(0.5, "apgd-ce", 64, 30, 0.02)
    assert r.status == "fail" and "30/64" in r.detail
    d_ok = [{"eps": 0.1, "n_tested": 64, "n_broken": 1, "by": {"square": 1, "noise": 0}}]
    assert black_box_not_stronger.judge(d_ok, 0.02).status == "pass"
    d_bad = [{"eps": 0.1, "n_tested": 64, "n_broken": 9, "by": {"square": 8, "noise": 1}}]
    assert black_box_not_stronger.judge(d_bad, 0.02).status == "fail"
    assert (
        more_iterations_no_gain.judge("pgd", [{"eps": 0.1, "n_tested": 64, "n_broken": 6}], 0.02).status
        == "fail"
    )
    assert (
        more_iterations_no_gain.judge("pgd", [{"eps": 0.1, "n_tested": 64, "n_broken": 1}], 0.02).status
        == "pass"
    )
    assert more_iterations_no_gain.judge(None, [], 0.02).status == "skip"


def test_waiver_keeps_the_outcome():
    r = CheckResult("outputs_logits", "fail", "probabilities")
    d = r.as_dict("served as probabilities by contract")
    assert d["status"] == "waived" and d["outcome"] == "fail"
    assert d["waiver"] == "served as probabilities by contract" and d["title"]
    assert d["explanation"] == outputs_logits.OutputsLogits.explanation
