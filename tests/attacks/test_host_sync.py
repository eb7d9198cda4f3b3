"""GPU fast path, checked on the CPU: attack loops do not synchronise with the host every step.

On CUDA an attack drops broken samples from its batch only every ``ctx.compact_every`` steps
(``COMPACT_EVERY_CUDA``); every other step must queue kernels without waiting for the GPU (no
``.item()``, ``bool(tensor)``, ``nonzero`` or boolean-mask indexing). A dispatch mode sees every
aten op an attack runs, so these tests force the CUDA interval on the CPU and count the steps
that contain such an op. A second test checks that the interval never changes a result.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import attacks.base as base
from attacks.registry import get_attack

# Ops that make the host wait for the device: reading a value, or an output whose size depends
# on tensor values (nonzero, masked_select, indexing with a boolean mask).
_READS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default"}
_MASK_INDEXING = {"aten.index.Tensor", "aten.index_put_.default", "aten.index_put.default"}


class _SyncLog(TorchDispatchMode):
    """Records a timeline: "F" for each model forward pass, "S" for each host-synchronising op."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = str(func)
        if name in _READS or (name in _MASK_INDEXING and _has_bool_index(args)):
            self.events.append("S")
        return func(*args, **(kwargs or {}))

    def steps_with_sync(self) -> tuple[int, int]:
        """(forward passes, gaps between consecutive passes that hold at least one sync)."""
        n_fwd, gaps, synced = 0, 0, False
        for e in self.events:
            if e == "F":
                gaps += synced and n_fwd > 0
                n_fwd, synced = n_fwd + 1, False
            else:
                synced = True
        return n_fwd, gaps


def _has_bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices or ())


def _run_logged(attack, model, x, y, monkeypatch, every: int | None, **kw) -> tuple[_SyncLog, Any]:
    """Run ``attack`` with compaction every ``every`` steps (None: the device's own interval),
    logging only inside ``perturb``."""
    if every is not None:
        monkeypatch.setattr(base, "compact_interval", lambda device: every)
    log = _SyncLog()
    model_call = base.AttackContext.model

    def counted_model(ctx, inp):  # noqa: ANN001
        log.events.append("F")
        return model_call(ctx, inp)

    monkeypatch.setattr(base.AttackContext, "model", counted_model)
    perturb = attack.perturb

    def logged_perturb(*args, **kwargs):  # noqa: ANN002, ANN003
        with log:
            return perturb(*args, **kwargs)

    attack.perturb = logged_perturb
    result = attack(model, x, y, **kw)
    return log, result


# (attack, params, norm, eps, independent runs inside perturb: restarts x target classes)
CASES = [
    ("pgd", {"steps": 48}, "linf", 0.1, 1),
    ("pgd", {"steps": 24, "restarts": 2}, "linf", 0.1, 2),
    ("pgd", {"steps": 48}, "l2", 1.0, 1),
    ("apgd-ce", {"steps": 48}, "linf", 0.1, 1),
    ("apgd-t", {"steps": 24, "n_target_classes": 3}, "linf", 0.1, 3),
    ("fab", {"steps": 24, "n_target_classes": 2}, "linf", 0.1, 2),
    ("square", {"n_queries": 160}, "linf", 0.1, 1),
    ("square", {"n_queries": 160}, "l2", 1.0, 1),
    ("cw-l2", {"search_steps": 2, "steps": 24}, "l2", 1.0, 2),
    ("deepfool", {"steps": 24, "candidates": 3}, "l2", 1.0, 1),
]


@pytest.mark.parametrize(("name", "params", "norm", "eps", "runs"), CASES, ids=lambda v: str(v))
def test_attack_loops_sync_only_to_compact(
    name, params, norm, eps, runs, digits_model, digits_small, monkeypatch
):
    x, y = digits_small.x[:48], digits_small.y[:48]
    log, res = _run_logged(get_attack(name, **params), digits_model, x, y, monkeypatch, 8, eps=eps, norm=norm)
    n_fwd, synced = log.steps_with_sync()
    # Measured: at most one synchronising step per 8 forward passes, plus each run's start.
    assert n_fwd >= 16
    assert synced <= n_fwd / 8 + 2 * runs, (log.steps_with_sync(), "".join(log.events)[:400])
    assert res.success.any()  # samples did break: the compaction path ran


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "params", "norm", "eps", "runs"), CASES, ids=lambda v: str(v))
def test_attack_loops_on_cuda_sync_only_to_compact(name, params, norm, eps, runs, digits_test, monkeypatch):
    """The same count on a GPU, with the interval CUDA really uses."""
    from robustness.core.model import load_model

    model = load_model("zoo:digits-cnn", device="cuda")
    x, y = digits_test.x[:48], digits_test.y[:48]
    log, res = _run_logged(get_attack(name, **params), model, x, y, monkeypatch, None, eps=eps, norm=norm)
    n_fwd, synced = log.steps_with_sync()
    assert base.compact_interval(model.device) == 8
    assert synced <= n_fwd / 8 + 2 * runs, (log.steps_with_sync(), "".join(log.events)[:400])
    assert res.success.any()


def test_the_sync_log_sees_per_step_synchronisation(digits_model, digits_small, monkeypatch):
    """The detector is not blind: with compaction at every step (the CPU setting) PGD syncs each step."""
    x, y = digits_small.x[:48], digits_small.y[:48]
    log, _ = _run_logged(get_attack("pgd", steps=48), digits_model, x, y, monkeypatch, 1, eps=0.1)
    n_fwd, synced = log.steps_with_sync()
    assert synced >= n_fwd - 2


@pytest.mark.parametrize(("name", "params", "norm", "eps", "runs"), CASES, ids=lambda v: str(v))
def test_compaction_interval_does_not_change_results(
    name, params, norm, eps, runs, digits_model, digits_small, monkeypatch
):
    """Samples broken between compactions keep their first adversarial point and stop changing."""
    x, y = digits_small.x[:48], digits_small.y[:48]
    attack = get_attack(name, **params)
    per_step = attack(digits_model, x, y, eps=eps, norm=norm, seed=3)
    monkeypatch.setattr(base, "compact_interval", lambda device: 8)
    periodic = attack(digits_model, x, y, eps=eps, norm=norm, seed=3)
    assert torch.equal(per_step.success, periodic.success)
    assert torch.equal(per_step.adv_pred, periodic.adv_pred)
    assert torch.allclose(per_step.x_adv, periodic.x_adv, atol=1e-5)
    assert per_step.success.any()  # samples did break: the interval mattered
