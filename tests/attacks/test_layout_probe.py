"""The channels-last probe and FAB's NumPy sort change the time of an attack, not its result.

On the CPU an NCHW image batch is fed to the model channels-last when a probe finds that the
model computes the same on it (``attacks.layout.iterate_layout``); FAB's projection sorts its
breakpoints with NumPy (``attacks.fab._sort_rows``). Each test compares with the code path of
before: the batch's own layout, ``torch.sort``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attacks.apgd
import attacks.base
import attacks.fab
import attacks.layout
import attacks.square
from attacks.fab import _sort_rows, project_on_hyperplane_box
from attacks.layout import computes_same_channels_last, input_layout, iterate_layout
from attacks.registry import get_attack
from robustness.core.model import ModelUnderTest

CL_STRIDES = (3 * 12 * 12, 1, 12 * 3, 3)


class _SmallCNN(nn.Module):
    """3x12x12 inputs: conv, max-pooling, flatten, linear (the shape of the CIFAR case)."""

    def __init__(self, view: bool = False) -> None:
        super().__init__()
        self.view = view
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        # .view() of a channels-last activation raises: such a model must keep NCHW.
        h = h.view(h.shape[0], -1) if self.view else h.flatten(1)
        return self.fc(h)


class _NoisyCNN(_SmallCNN):
    """A randomized model: noise drawn like its input (so its draws follow the input's layout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + 0.1 * torch.randn_like(x))


def _model(cls: type = _SmallCNN, **kwargs) -> ModelUnderTest:
    """Fitted for 40 steps to random labels of random images: varied predictions and margins."""
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(0)
        net = cls(**kwargs)
        x, y = torch.rand(48, 3, 12, 12), torch.randint(0, 10, (48,))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        for _ in range(40):
            opt.zero_grad()
            nn.functional.cross_entropy(_SmallCNN.forward(net, x), y).backward()
            opt.step()
    return ModelUnderTest(net.eval(), spec="<small cnn>", device="cpu")


def _batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    # Labels the model predicts, so that there is something to attack.
    net = _model().net
    with torch.no_grad():
        y = net(x).argmax(dim=1)
    return x, y


def _context(mut: ModelUnderTest) -> attacks.base.AttackContext:
    return attacks.base.AttackContext(
        mut, "linf", torch.Generator().manual_seed(0), 10, attacks.base.PassCounter()
    )


def _without_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (attacks.apgd, attacks.fab, attacks.square):
        monkeypatch.setattr(module, "iterate_layout", lambda ctx, x: input_layout(x))


def test_probe_takes_channels_last_for_a_model_that_computes_the_same_and_counts_nothing():
    x, _ = _batch()
    assert input_layout(x) is torch.contiguous_format
    ctx = _context(_model())
    assert iterate_layout(ctx, x) is torch.channels_last
    assert ctx.n_forward == 0 and ctx._counter.backward == 0  # the probe's passes are not the attack's
    assert iterate_layout(ctx, x[:3]) is torch.channels_last  # cached per input shape
    # Not an NCHW image batch on the CPU: the batch's own layout, no probe.
    cl = x.contiguous(memory_format=torch.channels_last)
    assert iterate_layout(_context(_model()), cl) is torch.channels_last
    assert iterate_layout(_context(_model()), torch.rand(4, 7)) is torch.contiguous_format


def test_probe_keeps_nchw_for_a_model_that_views_activations_or_draws_by_layout():
    x, _ = _batch()
    viewing = _model(view=True)
    with pytest.raises(RuntimeError):
        viewing(x.contiguous(memory_format=torch.channels_last))  # what the probe must catch
    assert not computes_same_channels_last(viewing, x[:4])
    assert iterate_layout(_context(viewing), x) is torch.contiguous_format
    noisy = _model(_NoisyCNN)
    state = torch.random.get_rng_state()
    assert iterate_layout(_context(noisy), x) is torch.contiguous_format
    assert torch.equal(torch.random.get_rng_state(), state)  # the probe leaves the global draws alone


@pytest.mark.parametrize(
    ("name", "params", "eps"),
    [
        ("apgd-ce", {"steps": 10}, 0.004),
        ("apgd-t", {"steps": 5, "n_target_classes": 2}, 0.004),
        ("fab", {"steps": 5, "n_target_classes": 2}, 0.004),
        ("square", {"n_queries": 40}, 0.03),
    ],
)
def test_channels_last_iterates_give_the_nchw_results(monkeypatch, model_strides, name, params, eps):
    """An NCHW batch: the model sees channels-last iterates, and the attack breaks the same samples
    with the same adversarial examples (within float tolerance) and the same pass counts as when
    the iterates stay NCHW."""
    mut = _model()
    x, y = _batch()
    strides = model_strides
    fast = get_attack(name, **params)(mut, x, y, eps=eps, seed=0)
    assert strides.count(CL_STRIDES) >= len(strides) - 4  # all but the clean and judging passes
    with monkeypatch.context() as m:
        _without_probe(m)
        strides.clear()
        slow = get_attack(name, **params)(mut, x, y, eps=eps, seed=0)
        assert CL_STRIDES not in strides
    assert 0 < int(slow.success.sum()) < len(y)  # something broken and something left
    assert torch.equal(fast.success, slow.success)
    assert torch.allclose(fast.x_adv, slow.x_adv, atol=1e-5)
    assert (fast.n_forward, fast.n_backward) == (slow.n_forward, slow.n_backward)


def test_a_model_that_views_activations_still_runs_the_ensemble():
    mut = _model(view=True)
    x, y = _batch(8)
    result = get_attack("autoattack-fast", steps=5, n_queries=20)(mut, x, y, eps=0.004, seed=0)
    assert result.success.shape == (8,)
    assert 0.0 < result.robust_accuracy < 1.0


def test_numpy_row_sort_matches_torch_sort():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(6, 300, generator=g)
    t[:, :40] = 0.5  # ties
    t[t < 0.05] = float("inf")  # coordinates that never saturate
    values, order = _sort_rows(t)
    ref_values, _ = t.sort(dim=1)
    assert torch.equal(values, ref_values)
    assert torch.equal(t.gather(1, order), ref_values)
    assert order.dtype == torch.long
    assert torch.equal(torch.sort(order, dim=1).values, torch.arange(300).expand(6, -1))  # a permutation


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_with_numpy_sort_matches_torch_sort(monkeypatch, norm):
    g = torch.Generator().manual_seed(2)
    p = torch.rand(16, 200, generator=g)
    p[:, :30] = 1.0  # on the bound: equal breakpoints
    w = torch.randn(16, 200, generator=g)
    r = torch.randn(16, generator=g) * 2
    fast = project_on_hyperplane_box(p, w, r, 0.0, 1.0, norm)
    monkeypatch.setattr(attacks.fab, "_sort_rows", lambda t: t.sort(dim=1))
    slow = project_on_hyperplane_box(p, w, r, 0.0, 1.0, norm)
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    reached = (w * fast).sum(dim=1)
    feasible = (
        torch.isfinite(fast).all(dim=1)
        & ((p + fast) >= -1e-6).all(dim=1)
        & ((p + fast) <= 1 + 1e-6).all(dim=1)
    )
    assert bool(feasible.all())
    assert torch.allclose(reached[(reached - r).abs() < 1e-3], r[(reached - r).abs() < 1e-3], atol=1e-3)
