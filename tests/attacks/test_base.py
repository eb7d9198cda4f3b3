"""The base class's own guarantees, checked with tiny hand-made attacks whose behaviour is known."""

from __future__ import annotations

import pytest
import torch

from attacks.base import Attack, AttackContext, AttackResult
from attacks.registry import available, get_attack
from robustness.core.errors import AttackError, ThreatModelError
from robustness.core.threat import lp_norm

# These classes are deliberately not @register-ed: the registry must stay the real one.


class Recorder(Attack):
    """Returns x + eps * sign(grad), making exactly two forward and one backward pass per sample."""

    name = "recorder"
    norms = ("linf",)
    description = "test attack"

    def __init__(self, **params):
        super().__init__(**params)
        self.calls: list[tuple[int, float]] = []

    def perturb(self, ctx: AttackContext, x, y, eps, targets):
        self.calls.append((int(x.shape[0]), float(eps[0])))
        x = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(ctx.model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            ctx.model(x)  # a second, gradient-free forward pass
        return x.detach() + eps.view(-1, 1, 1, 1) * g.sign()


class Wild(Attack):
    """Misbehaves on purpose: mutates its input in place and returns points far outside the ball."""

    name = "wild"
    norms = ("linf", "l2", "l1")
    kind = "black-box"

    def perturb(self, ctx, x, y, eps, targets):
        x.add_(5.0)  # in place: must not reach the caller's tensor
        return x + 3.0 * torch.randn(x.shape, generator=ctx.generator, device=x.device)


class Idle(Attack):
    """Returns the clean input: any 'success' it gets would be assumed, not observed."""

    name = "idle"
    norms = ("linf",)
    supports_targeted = True

    def perturb(self, ctx, x, y, eps, targets):
        return x.clone()


@pytest.fixture(scope="module")
def batch(digits_test):
    return digits_test.x[:64], digits_test.y[:64]


def test_unknown_parameter_names_the_known_ones():
    with pytest.raises(AttackError) as exc:
        get_attack("pgd", stepz=3)
    msg = str(exc.value)
    assert "stepz" in msg and "steps" in msg and "restarts" in msg


def test_bad_parameter_value():
    with pytest.raises(AttackError, match="steps"):
        get_attack("pgd", steps=0)


def test_unknown_attack_lists_the_known_ones():
    with pytest.raises(AttackError) as exc:
        get_attack("pgd-typo")
    msg = str(exc.value)
    assert "pgd-typo" in msg
    for name in available():
        assert name in msg


def test_unsupported_norm(digits_model, batch):
    with pytest.raises(AttackError, match="l2"):
        Recorder()(digits_model, *batch, eps=0.1, norm="l2")


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), [0.1, -1.0]])
def test_bad_eps(digits_model, batch, eps):
    with pytest.raises(ThreatModelError):
        get_attack("pgd")(digits_model, *batch, eps=eps)


def test_targeted_request_to_untargeted_attack(digits_model, batch):
    with pytest.raises(AttackError, match="targeted"):
        Recorder()(digits_model, *batch, eps=0.1, targeted="random")


def test_label_count_mismatch(digits_model, batch):
    x, y = batch
    with pytest.raises(AttackError, match="labels"):
        get_attack("pgd")(digits_model, x, y[:-1], eps=0.1)


def test_single_eps_gives_one_result_and_a_list_gives_a_list(digits_model, batch):
    one = get_attack("fgsm")(digits_model, *batch, eps=0.1)
    many = get_attack("fgsm")(digits_model, *batch, eps=[0.1])
    assert isinstance(one, AttackResult)
    assert isinstance(many, list) and len(many) == 1
    assert torch.equal(one.x_adv, many[0].x_adv)


def test_counts_are_exact(digits_model, batch):
    x, y = batch
    att = Recorder()
    res = att(digits_model, x, y, eps=0.05)
    correct = int((digits_model.predict(x) == y).sum())
    assert att.calls == [(correct, pytest.approx(0.05))]
    # Two forward passes per attacked sample plus the re-prediction of all samples.
    assert res.n_forward == 2 * correct + len(y)
    assert res.n_backward == correct
    assert res.n_queries == 0  # white-box


def test_black_box_counts_queries(digits_model, batch):
    res = Wild()(digits_model, *batch, eps=0.1)
    assert res.n_queries == res.n_forward > 0


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5), ("l1", 2.0)])
def test_projection_and_no_mutation_despite_a_misbehaving_attack(digits_model, batch, norm, eps):
    x, y = batch
    x_before = x.clone()
    res = Wild()(digits_model, x, y, eps=eps, norm=norm)
    assert torch.equal(x, x_before)
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert float(lp_norm(res.x_adv - x, norm).max()) <= eps + 1e-5
    assert torch.allclose(res.perturbation_norm, lp_norm(res.x_adv - x, norm), atol=1e-6)


def test_success_is_observed_not_assumed(digits_model, batch):
    x, y = batch
    res = Idle()(digits_model, x, y, eps=0.1)
    clean = digits_model.predict(x)
    assert torch.equal(res.adv_pred, clean)
    assert torch.equal(res.success, clean != y)
    assert res.robust_accuracy == res.clean_accuracy == int((clean == y).sum()) / len(y)


def test_broken_samples_are_not_attacked_again_at_larger_eps(digits_model, batch):
    x, y = batch
    att = Recorder()
    res = att(digits_model, x, y, eps=[0.3, 0.05, 0.1])  # given unsorted: run ascending
    assert [r.eps for r in res] == [0.05, 0.1, 0.3]
    correct = int((digits_model.predict(x) == y).sum())
    sizes = [n for n, _ in att.calls]
    assert [e for _, e in att.calls] == pytest.approx([0.05, 0.1, 0.3])
    assert sizes[0] == correct
    assert sizes[1] == int(res[0].robust.sum()) and sizes[2] == int(res[1].robust.sum())
    for small, large in zip(res, res[1:]):
        assert not bool((large.robust & ~small.robust).any())
        # A sample broken at the smaller eps keeps that example.
        kept = small.success & (small.clean_pred == small.y)
        assert torch.equal(large.x_adv[kept], small.x_adv[kept])


def test_dtype_and_shape_follow_the_input(digits_model, batch):
    x, y = batch
    res = get_attack("pgd", steps=3)(digits_model, x.double(), y, eps=0.1)
    assert res.x_adv.dtype == torch.float64 and res.x_adv.shape == x.shape


def test_batch_splitting_matches_one_batch(digits_model, batch):
    x, y = batch
    att = get_attack("pgd", steps=10, random_start=False)
    whole = att(digits_model, x, y, eps=[0.05, 0.1])
    split = att(digits_model, x, y, eps=[0.05, 0.1], batch_size=7)
    for a, b in zip(whole, split):
        assert torch.equal(a.success, b.success)
        assert torch.allclose(a.x_adv, b.x_adv, atol=1e-6)
        assert a.n_backward == b.n_backward


def test_seeded_random_start_is_reproducible_and_seed_dependent(digits_model, batch):
    att = get_attack("pgd", steps=3)
    a = att(digits_model, *batch, eps=0.05, seed=1)
    b = att(digits_model, *batch, eps=0.05, seed=1)
    c = att(digits_model, *batch, eps=0.05, seed=2)
    assert torch.equal(a.x_adv, b.x_adv)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_target_mode_random(digits_model, batch):
    x, y = batch
    att = get_attack("pgd", steps=10)
    a = att(digits_model, x, y, eps=0.2, targeted="random", seed=3)
    b = att(digits_model, x, y, eps=0.2, targeted="random", seed=3)
    assert torch.equal(a.targets, b.targets)
    assert bool((a.targets != y).all()) and int(a.targets.min()) >= 0 and int(a.targets.max()) <= 9
    assert len(set(a.targets.tolist())) > 3  # spread over classes, not one constant target
    assert torch.equal(a.success, a.adv_pred == a.targets)
    assert bool(a.success.any())


def test_target_mode_least_likely(digits_model, batch):
    x, y = batch
    res = get_attack("pgd", steps=10)(digits_model, x, y, eps=0.3, targeted="least-likely")
    assert torch.equal(res.targets, digits_model.logits(x).argmin(dim=1))
    assert torch.equal(res.success, res.adv_pred == res.targets)


def test_target_tensor(digits_model, batch):
    x, y = batch
    targets = (y + 1) % 10
    res = get_attack("pgd", steps=20)(digits_model, x, y, eps=0.3, targeted=targets)
    assert torch.equal(res.targets, targets)
    assert torch.equal(res.success, res.adv_pred == targets)
    assert float(res.success.float().mean()) > 0.5
    # Samples already predicted as their target are left alone.
    already = res.clean_pred == targets
    assert torch.equal(res.x_adv[already], x[already])


def test_bad_targets(digits_model, batch):
    x, y = batch
    with pytest.raises(AttackError, match="targets"):
        Idle()(digits_model, x, y, eps=0.1, targeted=torch.full_like(y, 10))
    with pytest.raises(AttackError, match="targets"):
        Idle()(digits_model, x, y, eps=0.1, targeted=y[:3])
    with pytest.raises(AttackError, match="least-likely"):
        Idle()(digits_model, x, y, eps=0.1, targeted="most-likely")


def test_summary_is_json_ready(digits_model, batch):
    import json

    s = get_attack("fgsm")(digits_model, *batch, eps=0.1).summary()
    json.dumps(s)
    lo, hi = s["robust_accuracy_ci"]
    assert lo <= s["robust_accuracy"] <= hi
    for key in (
        "attack",
        "norm",
        "eps",
        "n",
        "clean_accuracy",
        "n_forward",
        "n_backward",
        "n_queries",
        "time_s",
    ):
        assert key in s


def test_call_is_final():
    with pytest.raises(TypeError, match="Sneaky.*final"):

        class Sneaky(Attack):
            name = "sneaky"

            def __call__(self, model, x, y, **kwargs):
                return "my own contract"

    # Every attack in the library keeps the one contract.
    for cls in available().values():
        assert cls.__call__ is Attack.__call__, cls


def test_attacks_take_a_loaded_model_not_a_spec(digits_model, batch):
    with pytest.raises(AttackError, match="loaded model") as exc:
        Idle()("zoo:digits-cnn", *batch, eps=0.1)
    assert exc.value.field == "model" and "load_model" in exc.value.fix
    # An nn.Module is wrapped as it is (default bounds), with the same result.
    wrapped = Idle()(digits_model.net, *batch, eps=0.1)
    assert torch.equal(wrapped.adv_pred, Idle()(digits_model, *batch, eps=0.1).adv_pred)


def test_each_result_says_who_broke_each_sample(digits_model, batch):
    x, y = batch
    att = Recorder()
    res = att(digits_model, x, y, eps=[0.05, 0.3])
    for r in res:
        assert r.members == ("recorder",)
        clean_wrong = (r.clean_pred != r.y).tolist()
        for label, wrong, success in zip(r.broken_by, clean_wrong, r.success.tolist()):
            assert label == ("clean" if wrong else "recorder" if success else None)
        assert r.robust_after == {"recorder": r.robust_accuracy}
    # The result is data: a second call on other samples leaves the first result as it was.
    first = list(res[0].broken_by)
    att(digits_model, x[:5], y[:5], eps=0.05)
    assert res[0].broken_by == first and len(first) == len(y)


def test_worst_case_carry_keeps_examples_and_attribution():
    from attacks.base import WorstCase

    x = torch.zeros(4, 2)
    worst = WorstCase(x, torch.tensor([True, False, False, False]))
    assert worst.broken_by == ["clean", None, None, None]
    assert worst.standing().tolist() == [1, 2, 3]
    worst.propose(torch.tensor([1, 2, 3]), torch.ones(3, 2))
    worst.settle(torch.tensor([True, True, False, True]), [None, "a", "b", None])
    assert worst.broken_by == ["clean", "a", None, "unattributed"]
    assert worst.standing().tolist() == [2]
    worst.propose(torch.tensor([2]), torch.full((1, 2), 2.0))
    worst.settle(torch.tensor([True, True, True, True]), [None, None, "c", None])
    assert worst.broken_by == ["clean", "a", "c", "unattributed"]
    assert worst.x_best.tolist() == [[0, 0], [1, 1], [2, 2], [1, 1]]
