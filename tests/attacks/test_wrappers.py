"""EOT on a randomized model and BPDA on a quantising model: plain PGD flatters, the wrappers do not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.registry import get_attack
from robustness.core.errors import AttackError
from robustness.core.model import ModelUnderTest


class NoisyInput(nn.Module):
    """A randomized defense: Gaussian noise on the input before the network."""

    def __init__(self, net: nn.Module, sigma: float = 0.3) -> None:
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.sigma * torch.randn_like(x))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round inputs to 4 levels: zero gradient almost everywhere."""
    return torch.round(x * 3) / 3


class Quantized(nn.Module):
    """A gradient-masking defense that exposes its split as ``.preprocess`` and ``.body``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.preprocess(x))


class Opaque(nn.Module):
    """The same quantising model without the attributes: the split must be given explicitly."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.net = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(quantize(x))


def robust_over_draws(mut: ModelUnderTest, x_adv: torch.Tensor, y: torch.Tensor, draws: int = 10) -> float:
    """Mean accuracy of a randomized model on fixed examples over fresh random draws."""
    torch.manual_seed(1234)
    return float(torch.stack([mut.predict(x_adv) == y for _ in range(draws)]).float().mean())


@pytest.fixture(scope="module")
def noisy(digits_model):
    return ModelUnderTest(NoisyInput(digits_model.module), spec="noisy", device="cpu")


def test_eot_beats_plain_pgd_on_a_randomized_model(noisy, digits_small):
    x, y = digits_small.x, digits_small.y
    torch.manual_seed(0)
    plain = get_attack("pgd", steps=20)(noisy, x, y, eps=0.15)
    torch.manual_seed(0)
    eot = get_attack("eot", eot_samples=10, attack_params={"steps": 20})(noisy, x, y, eps=0.15)
    # Measured (clean 0.80): plain PGD reports 0.64, EOT 0.37; over 10 fresh draws 0.63 vs 0.36.
    assert eot.robust_accuracy <= plain.robust_accuracy - 0.15, (eot.robust_accuracy, plain.robust_accuracy)
    p, e = robust_over_draws(noisy, plain.x_adv, y), robust_over_draws(noisy, eot.x_adv, y)
    assert e <= p - 0.15, (e, p)
    # Each inner forward/backward is eot_samples real passes, and they are counted.
    assert eot.n_backward >= 10 * plain.n_backward // 2


def test_eot_is_reproducible_and_leaves_the_global_rng_alone(noisy, digits_small):
    x, y = digits_small.x[:30], digits_small.y[:30]
    attack = get_attack("eot", eot_samples=3, attack_params={"steps": 5}, stack=True)
    torch.manual_seed(5)
    a = attack(noisy, x, y, eps=0.15, seed=1)
    after = torch.rand(1)
    torch.manual_seed(5)
    b = attack(noisy, x, y, eps=0.15, seed=1)
    assert torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(torch.rand(1), after)  # the model's seeded draws ran in a forked RNG


def test_eot_on_a_deterministic_model_is_the_inner_attack(digits_model, digits_small):
    x, y = digits_small.x, digits_small.y
    plain = get_attack("pgd")(digits_model, x, y, eps=0.1)
    attack = get_attack("eot", eot_samples=2)
    eot = attack(digits_model, x, y, eps=0.1)
    assert abs(eot.robust_accuracy - plain.robust_accuracy) <= 0.03
    assert eot.params["attack"] == "pgd" and attack.norms == ("linf", "l2", "l1")
    # The wrapper takes its norms and targeted support from the inner attack.
    assert get_attack("eot", attack="cw-l2").norms == ("l2",)
    assert get_attack("bpda", attack="deepfool").supports_targeted is False


@pytest.mark.parametrize("split", ["attributes", "explicit"])
def test_bpda_breaks_input_quantisation(digits_model, digits_small, split):
    x, y = digits_small.x, digits_small.y
    if split == "attributes":
        mut = ModelUnderTest(Quantized(digits_model.module), spec="quantized", device="cpu")
        bpda = get_attack("bpda", attack_params={"steps": 20})
    else:
        mut = ModelUnderTest(Opaque(digits_model.module), spec="opaque", device="cpu")
        bpda = get_attack(
            "bpda", preprocess=quantize, model_body=digits_model.module, attack_params={"steps": 20}
        )
    plain = get_attack("pgd", steps=20)(mut, x, y, eps=0.2)
    broken = bpda(mut, x, y, eps=0.2)
    # Measured (clean 0.97): PGD 0.95 (zero gradients: a flattering number), BPDA 0.00.
    assert plain.clean_accuracy >= 0.95
    assert plain.robust_accuracy >= 0.8
    assert broken.robust_accuracy <= 0.05
    assert broken.params["preprocess"] in (None, "tests.attacks.test_wrappers:quantize")


def test_bpda_preprocess_as_a_spec_and_a_custom_backward(digits_model, digits_small):
    x, y = digits_small.x[:40], digits_small.y[:40]
    mut = ModelUnderTest(Opaque(digits_model.module), spec="opaque", device="cpu")
    r = get_attack(
        "bpda",
        preprocess="tests.attacks.test_wrappers:quantize",
        model_body=digits_model.module,
        backward=lambda z: z.clamp(0, 1),  # any differentiable approximation of the preprocessing
    )(mut, x, y, eps=0.2)
    assert r.robust_accuracy <= 0.05


def test_bpda_errors(digits_model, digits_small):
    x, y = digits_small.x[:10], digits_small.y[:10]
    opaque = ModelUnderTest(Opaque(digits_model.module), spec="opaque", device="cpu")
    with pytest.raises(AttackError, match="preprocess") as info:
        get_attack("bpda")(opaque, x, y, eps=0.2)
    assert "model_body" in str(info.value)
    # A body that is not what the model applies: caught before attacking, not a silently weak attack.
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(AttackError, match="does not reproduce"):
        get_attack("bpda", preprocess=quantize, model_body=other)(opaque, x, y, eps=0.2)
    with pytest.raises(AttackError, match="unknown attack"):
        get_attack("bpda", attack="nope")
    with pytest.raises(AttackError, match="itself"):
        get_attack("eot", attack="eot")
    with pytest.raises(AttackError, match="eot_samples"):
        get_attack("eot", eot_samples=0)
