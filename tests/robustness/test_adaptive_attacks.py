"""Adaptive attacks from the audit file: BPDA through a named surrogate, transfer from a named model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustness.audit import run_audit
from robustness.config import AttackSpec, parse_config, resolve_attacks
from robustness.core.errors import ConfigError
from robustness.core.model import ModelUnderTest

EPS = 0.15


class Quantized(nn.Module):
    """Inputs rounded to 4 levels before the network, exposed as ``.preprocess`` and ``.body``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 3) / 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.preprocess(x))


def config(tmp_path, adaptive: dict | None) -> dict:
    return {
        "model": {"spec": "<quantized>", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 30, "batch_size": 32},
        "threat": {"norm": "linf", "eps": [EPS]},
        "attacks": [{"name": "apgd-ce", "params": {"steps": 20}}],
        # The checks are tested elsewhere; here only the attacks matter.
        "sanity_checks": {"enabled": False, "reason": "testing the adaptive attacks alone"},
        "output": {"dir": str(tmp_path), "formats": ["json"]},
        **({"adaptive": adaptive} if adaptive else {}),
    }


def test_the_adaptive_block_wraps_gradient_attacks_and_adds_transfer(tmp_path):
    cfg = parse_config(
        config(
            tmp_path,
            {
                "bpda": {"preprocess": "mypkg.defense:quantize", "backward": "mypkg.defense:soft"},
                "transfer": {"surrogate": "zoo:digits-cnn", "params": {"steps": 10}},
            },
        )
        | {"attacks": "quick"}
    )
    attacks = resolve_attacks(cfg)
    assert [a.name for a in attacks] == ["bpda", "bpda", "square", "transfer"]
    assert attacks[0].params["attack"] == "apgd-ce" and attacks[0].params["attack_params"] == {"steps": 50}
    assert attacks[0].params["preprocess"] == "mypkg.defense:quantize"
    assert attacks[0].params["backward"] == "mypkg.defense:soft"
    assert attacks[-1] == AttackSpec(
        name="transfer",
        params={"surrogate": "zoo:digits-cnn", "attack": "apgd-ce", "attack_params": {"steps": 10}},
    )
    with pytest.raises(ConfigError, match="surrogate"):
        parse_config(config(tmp_path, {"transfer": {"attack": "pgd"}}))


def test_bpda_from_the_config_sees_through_the_quantizer(digits_model, tmp_path):
    net = copy.deepcopy(digits_model.module)
    plain = run_audit(
        config(tmp_path / "plain", None), model=ModelUnderTest(Quantized(net), spec="q", device="cpu")
    )
    adaptive = {"bpda": {}, "transfer": {"surrogate": "zoo:digits-cnn", "params": {"steps": 10}}}
    res = run_audit(
        config(tmp_path / "bpda", adaptive), model=ModelUnderTest(Quantized(net), spec="q", device="cpu")
    )
    assert [a["name"] for a in res["attacks"]] == ["bpda(apgd-ce)", "transfer(apgd-ce)"]
    # APGD alone meets zero gradients; through BPDA it breaks most of what it could not.
    per = res["robust"][0]["per_attack"]
    assert per["bpda(apgd-ce)"] <= plain["robust"][0]["per_attack"]["apgd-ce"] - 0.3, (per, plain["robust"])
    assert res["robust"][0]["accuracy"] <= per["bpda(apgd-ce)"]
