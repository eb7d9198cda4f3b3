"""The AutoAttack members' fast paths leave no sample robust that the code before them broke.

Two changes made the ensemble about twice as fast on the CPU: the model sees every iterate in
the memory layout of the batch (``attacks/layout.py``; NCHW iterates of channels-last digits
sent max-pooling down PyTorch's slow kernel), and Square's linf search keeps the state of the
samples it still searches compacted. ``BROKEN_BEFORE`` lists, per configuration, the samples of
the first 100 digits test images that the code before these changes broke at seed 0 (one
thread, as every test here); each must still be broken. At the time of writing the sets are
equal, sample for sample.
"""

from __future__ import annotations

import pytest
import torch

import attacks.apgd
import attacks.base
import attacks.fab
import attacks.square
from attacks.layout import in_layout, input_layout
from attacks.registry import get_attack

# (attack, norm, eps) -> the samples broken before the fast paths (seed 0, the first 100 digits).
BROKEN_BEFORE = {
    ("autoattack-fast", "linf", 0.05): "1 7 14 15 23 27 39 41 45 77 79 95 97",
    ("autoattack-fast", "linf", 0.1): (
        "1 6 7 8 10 11 12 13 14 15 18 23 27 35 36 37 39 41 43 45 52 53 54 55 56 57 62 65 72 77 79 81 82 "
        "84 86 87 89 90 92 95 97 98 99"
    ),
    ("autoattack-fast", "l2", 0.5): (
        "1 3 6 7 8 10 11 14 15 18 23 27 30 35 36 37 39 41 43 45 46 50 52 54 55 56 57 62 65 68 77 79 81 "
        "82 86 87 89 90 92 95 97 98 99"
    ),
    ("square", "linf", 0.1): (
        "1 6 7 8 10 11 14 15 18 23 27 35 36 39 41 43 45 50 52 55 56 57 62 65 77 79 81 82 84 86 87 89 90 "
        "95 97 99"
    ),
}
PARAMS = {"autoattack-fast": {}, "square": {"n_queries": 300}}


def _broken(results) -> dict[float, set[int]]:
    return {r.eps: {i for i, robust in enumerate(r.robust.tolist()) if not robust} for r in results}


@pytest.mark.parametrize(
    ("name", "norm", "eps"),
    [("autoattack-fast", "linf", (0.05, 0.1)), ("autoattack-fast", "l2", (0.5,)), ("square", "linf", (0.1,))],
)
def test_every_sample_broken_before_is_still_broken(digits_model, digits_small, name, norm, eps):
    x, y = digits_small.x, digits_small.y
    results = get_attack(name, **PARAMS[name])(digits_model, x, y, eps=list(eps), norm=norm, seed=0)
    for e, broken in _broken(results).items():
        before = {int(i) for i in BROKEN_BEFORE[(name, norm, e)].split()}
        assert before <= broken, f"{name} {norm} eps {e}: robust again {sorted(before - broken)}"
        assert len(broken) == len(before)  # measured: the same samples


def test_layout_path_gives_the_slow_paths_results(digits_model, digits_small, monkeypatch):
    """With the iterates left in the layout the arithmetic produced (the slow path), the
    ensemble breaks the same samples: the layout changes the time, not the result."""
    x, y = digits_small.x, digits_small.y
    fast = get_attack("autoattack-fast")(digits_model, x, y, eps=0.1, seed=0)
    for module in (attacks.apgd, attacks.fab, attacks.square):
        monkeypatch.setattr(module, "in_layout", lambda t, layout: t)
    slow = get_attack("autoattack-fast")(digits_model, x, y, eps=0.1, seed=0)
    assert torch.equal(fast.robust, slow.robust)
    assert fast.robust_accuracy == slow.robust_accuracy == 0.56
    assert fast.broken_by == slow.broken_by


@pytest.mark.parametrize(
    ("name", "params"), [("apgd-t", {"steps": 5}), ("fab", {"steps": 5}), ("square", {})]
)
def test_model_sees_iterates_in_the_batch_layout(digits_model, digits_small, model_strides, name, params):
    """The digits batch is channels-last (one channel, strides (64, 1, 8, 1)); every input the
    model gets during the attack has those strides, not the NCHW ones of fresh random draws."""
    x, y = digits_small.x[:20], digits_small.y[:20]
    assert input_layout(x) is torch.channels_last
    params = {**params, "n_queries": 20} if name == "square" else params
    get_attack(name, **params)(digits_model, x, y, eps=0.05, seed=0)
    assert len(model_strides) > 5
    assert set(model_strides) == {(64, 1, 8, 1)}


def test_in_layout_converts_values_unchanged_and_passes_gradients():
    t = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert t.stride() == (64, 64, 8, 1)  # fresh draws: NCHW strides
    moved = in_layout(t, torch.channels_last)
    assert moved.stride() == (64, 1, 8, 1) and torch.equal(moved, t)
    assert in_layout(moved, torch.channels_last) is moved  # already there: no copy
    rgb = torch.rand(2, 3, 5, 5)
    assert input_layout(rgb) is torch.contiguous_format
    assert in_layout(rgb, torch.contiguous_format) is rgb  # an NCHW batch stays as it is
    assert in_layout(torch.rand(2, 64), torch.channels_last).dim() == 2  # not an image: untouched
    leaf = rgb.clone().requires_grad_(True)
    (in_layout(leaf, torch.channels_last) * 3).sum().backward()
    assert torch.equal(leaf.grad, torch.full_like(rgb, 3.0))
