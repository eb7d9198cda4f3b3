"""The attack contract, checked for every registered attack and every norm it supports.

The list of attacks is read from the registry when the tests are collected, so an attack
added later is covered without editing this file. Budgets are cut to keep the whole file
fast: ``BUDGET`` shrinks any parameter of that name an attack has, and ``EXTRA`` gives
attacks that need more (a surrogate model, a preprocessing function) what they need.

The model is a trap: the digits CNN behind a BatchNorm layer and in front of a Dropout
layer, both in train mode when the attack starts. In eval mode both are (nearly) the
identity; an attack that forgot eval mode would see random outputs and would change the
BatchNorm statistics, which the state-dict check catches.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from attacks.registry import available, get_attack
from robustness.core.model import ModelUnderTest
from robustness.core.threat import lp_norm

ATTACKS = available()

EPS = {"linf": (0.05, 0.15), "l2": (0.5, 1.5), "l1": (2.0, 6.0)}
N_SAMPLES = 32

# Any parameter with one of these names is set to the small value (if the attack has it).
BUDGET: dict[str, Any] = {
    "steps": 5,
    "max_iter": 5,
    "iterations": 5,
    "n_iter": 5,
    "restarts": 1,
    "n_restarts": 1,
    "n_queries": 60,
    "max_queries": 60,
    "n_target_classes": 2,
    "n_samples": 8,
    "n_corners": 8,
    "eot_samples": 2,
    "binary_search_steps": 2,
    "search_steps": 2,
    # Wrappers: the inner attack (pgd by default) at a small budget.
    "attack_params": {"steps": 5},
}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# Per-attack additions, as functions of the model under test (None at collection time).
EXTRA: dict[str, Any] = {
    "transfer": lambda mut: {"surrogate": "zoo:digits-cnn"},
    # The whole trap network is the body behind an identity preprocessing: the split must
    # reproduce the model's logits, which bpda checks.
    "bpda": lambda mut: {"preprocess": _identity, "model_body": None if mut is None else mut.net},
}


def params_for(name: str, mut: ModelUnderTest | None = None) -> dict[str, Any]:
    defaults = ATTACKS[name].defaults()
    params = {k: v for k, v in BUDGET.items() if k in defaults}
    if name in EXTRA:
        params.update({k: v for k, v in EXTRA[name](mut).items() if k in defaults})
    return params


def _cases() -> tuple[list, list]:
    """(name, norm) pairs and targeted names, from the instances (wrappers take their inner attack's)."""
    cases, targeted = [], []
    for name in ATTACKS:
        attack = get_attack(name, **params_for(name))
        cases += [pytest.param(name, norm, id=f"{name}-{norm}") for norm in attack.norms]
        if attack.supports_targeted:
            targeted.append(name)
    return cases, targeted


CASES, TARGETED = _cases()


def trap_model(digits_model: ModelUnderTest, device: str) -> ModelUnderTest:
    net = nn.Sequential(nn.BatchNorm2d(1), copy.deepcopy(digits_model.module), nn.Dropout(0.5))
    return ModelUnderTest(net, spec="trap", device=device)


@pytest.fixture(scope="module")
def data(digits_test):
    return digits_test.x[:N_SAMPLES].clone(), digits_test.y[:N_SAMPLES].clone()


def check_contract(name: str, norm: str, device: str, digits_model, data, targeted=None) -> None:
    mut = trap_model(digits_model, device)
    x = data[0].to(device)
    y = data[1].to(device)
    x_copy, y_copy = x.clone(), y.clone()
    mut.net.train()
    frozen = next(mut.net[1].parameters())
    frozen.requires_grad_(False)  # a mixed state the attack must restore exactly
    flags = [p.requires_grad for p in mut.net.parameters()]
    state = {k: v.clone() for k, v in mut.net.state_dict().items()}
    eps = EPS[norm]
    attack = get_attack(name, **params_for(name, mut))

    results = attack(mut, x, y, eps=list(eps), norm=norm, seed=123, targeted=targeted)

    # Inputs and model untouched; mode and requires_grad restored; no weight gradients.
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert all(m.training for m in mut.net.modules())
    assert [p.requires_grad for p in mut.net.parameters()] == flags
    assert all(p.grad is None for p in mut.net.parameters())
    for k, v in mut.net.state_dict().items():
        assert torch.equal(v, state[k]), f"model state {k} changed"

    mut.net.eval()
    clean = mut.predict(x)
    assert len(results) == len(eps)
    for r, e in zip(results, eps):
        assert r.eps == pytest.approx(e)
        assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype and r.x_adv.device == x.device
        assert torch.isfinite(r.x_adv).all()
        lo, hi = mut.bounds
        assert float(r.x_adv.min()) >= lo - 1e-6 and float(r.x_adv.max()) <= hi + 1e-6
        assert float(lp_norm(r.x_adv - x, norm).max()) <= e * (1 + 1e-5) + 1e-5
        # Success is what re-prediction says.
        pred = mut.predict(r.x_adv)
        assert torch.equal(pred, r.adv_pred.to(pred.device))
        goal = (pred == r.targets.to(pred.device)) if targeted else (pred != y)
        assert torch.equal(r.success.to(pred.device), goal)
        assert torch.equal(r.clean_pred.to(device), clean)
        # Samples already misclassified (already at their target) are not attacked.
        done = (clean == r.targets.to(device)) if targeted else (clean != y)
        assert torch.equal(r.x_adv[done], x[done])
        assert r.n_forward > 0 and r.time_s >= 0
    # Per sample: an example found at the smaller eps counts at the larger one.
    small, large = results
    assert not bool((small.success & ~large.success).any())
    if not targeted:
        assert not bool((large.robust & ~small.robust).any())

    # Determinism: the same seed gives the same adversarial examples.
    mut.net.train()
    again = attack(mut, x, y, eps=list(eps), norm=norm, seed=123, targeted=targeted)
    for a, b in zip(results, again):
        assert torch.equal(a.x_adv, b.x_adv), f"{name} is not reproducible with a fixed seed"


@pytest.mark.parametrize("name,norm", CASES)
def test_contract_cpu(name, norm, digits_model, data):
    check_contract(name, norm, "cpu", digits_model, data)


@pytest.mark.parametrize("name", TARGETED)
def test_contract_targeted_cpu(name, digits_model, data):
    norm = get_attack(name, **params_for(name)).norms[0]
    check_contract(name, norm, "cpu", digits_model, data, targeted="random")


@pytest.mark.gpu
@pytest.mark.parametrize("name,norm", CASES)
def test_contract_cuda(name, norm, digits_model, data):
    # Bit-identical reruns on a GPU need cuDNN's deterministic kernels (its default backward
    # convolutions may sum in a different order each run); that is the user's switch too.
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        check_contract(name, norm, "cuda", digits_model, data)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def test_every_attack_is_described():
    for name, cls in ATTACKS.items():
        assert cls.name == name
        assert cls.kind in ("white-box", "black-box")
        assert cls.norms and set(cls.norms) <= {"linf", "l2", "l1"}
        assert cls.description, f"{name} has no description"
        if name not in EXTRA:
            get_attack(name)  # the defaults are valid


def test_the_reference_attacks_are_registered():
    assert {"pgd", "fgsm"} <= set(ATTACKS)
