"""The binarization test (Zimmermann et al. 2022) as a sanity check: it passes when the attacks find
the adversarial examples known to exist, and fails when the gradients are masked."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustness.audit import run_audit
from robustness.audit.checks import binarization
from robustness.core.model import ModelUnderTest

EPS = 0.15
ATTACKS = [
    {"name": "apgd-ce", "params": {"steps": 20}},
    {"name": "apgd-t", "params": {"steps": 20, "n_target_classes": 3}},
    {"name": "square", "params": {"n_queries": 300}},
]


class Rounded(nn.Module):
    """Inputs quantized to 4 levels before the network: zero gradients almost everywhere."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 3) / 3)


def audit(model: ModelUnderTest, tmp_path, waive: dict | None = None) -> dict:
    config = {
        "model": {"spec": "<model>", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 30, "batch_size": 32},
        "threat": {"norm": "linf", "eps": [EPS]},
        "attacks": ATTACKS,
        "sanity_checks": {"sample_size": 16, **({"waive": waive} if waive else {})},
        "output": {"dir": str(tmp_path), "formats": ["json"]},
    }
    return run_audit(config, model=model)


def outcome(res: dict) -> dict:
    return next(c for c in res["sanity_checks"] if c["name"] == "binarization")


def test_the_binarized_classifier_has_the_known_example(digits_model, digits_small):
    x = digits_small.x[:12]
    x = x[binarization.spread_apart(x, EPS, "linf")]
    model, valid, source = binarization.build(digits_model, x, EPS, "linf", seed=0)
    assert source == "penultimate features" and bool(valid.all())
    # Every input is class 0, and a point of its eps sphere is class 1 (the fit's sphere point).
    assert (model.predict(x) == 0).all()
    assert model.num_classes == 10 and model.logits(x)[:, 2:].amax() < model.logits(x)[:, :2].amin()
    # Routing: each input of a ball goes to its own readout.
    inside = (x + EPS * (2 * torch.rand_like(x) - 1)).clamp(0, 1)
    assert torch.equal(model.net.owner(inside), torch.arange(x.shape[0]))


def test_passes_on_the_demo_model(digits_model, tmp_path):
    res = audit(ModelUnderTest(copy.deepcopy(digits_model.module), spec="digits", device="cpu"), tmp_path)
    check = outcome(res)
    assert check["status"] == "pass", check["detail"]
    m = check["measured"]
    assert m["n_valid"] >= 12 and m["n_found_white_box"] == m["n_valid"]
    assert m["found_by"]["apgd-ce"] >= m["n_valid"] - 1
    # What the check's attacks find is not the model's: the robust number is the attacks' own.
    assert res["robust"][0]["found_by_checks"].get("binarization") is None


def test_fails_behind_a_four_level_input_quantizer(digits_model, tmp_path):
    rounded = ModelUnderTest(Rounded(copy.deepcopy(digits_model.module)), spec="round4", device="cpu")
    # With the gradient check waived, the binarization test still catches the masking.
    res = audit(rounded, tmp_path, waive={"gradients_nonzero": "testing the binarization check alone"})
    check = outcome(res)
    assert check["status"] == "fail", check["detail"]
    m = check["measured"]
    assert m["n_valid"] >= 8 and m["n_found_white_box"] == 0
    # Square (a random search) finds most of them: judged on the gradient attacks, not the ensemble.
    assert m["n_found"] > m["n_valid"] // 2 and "masked" in check["detail"]
    assert res["verdict"] == "unreliable"


def test_judge():
    base = {"eps": 0.1, "found_by": {"apgd-ce": 15}, "not_run": {}}
    assert (
        binarization.judge({**base, "n_valid": 16, "n_found": 16, "n_found_white_box": 15}, 0.02).status
        == "pass"
    )
    bad = binarization.judge({**base, "n_valid": 16, "n_found": 16, "n_found_white_box": 14}, 0.02)
    assert bad.status == "fail" and "black-box" in bad.detail
    assert binarization.judge({**base, "n_valid": 0, "n_found": 0}, 0.02).status == "skip"


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_ball_sampling(norm, eps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    from robustness.core.threat import lp_norm

    inner = binarization.sample_ball(x, 200, 0.95 * eps, norm, g, on_sphere=False)
    sphere = binarization.sample_ball(x, 5, eps, norm, g, on_sphere=True)
    d_in = lp_norm((inner - x[:, None]).flatten(0, 1), norm)
    d_sp = lp_norm((sphere - x[:, None]).flatten(0, 1), norm)
    assert float(d_in.max()) <= 0.95 * eps + 1e-6
    assert torch.allclose(d_sp, torch.full_like(d_sp, eps), atol=1e-5)
