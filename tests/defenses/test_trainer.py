"""The trainer's mechanics: each method trains, the inner attacks leave the weights alone, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch

from defenses import METHODS, TrainConfig, Trainer, available, get_objective_class
from defenses import checkpoint as ckpt
from robustness.core.data import load_data
from robustness.core.model import load_model
from robustness.zoo import DigitsCNN

# Every method is read from the registry; a hyper-parameter of one of these names is cut to this
# value (where the method declares it), and the adversarial methods train at eps 0.2.
BUDGET = {"steps": 2, "temperature": 20.0}
EPS = 0.2


def options(method: str) -> dict:
    cls = get_objective_class(method)
    cut = {k: v for k, v in BUDGET.items() if k in cls.hyperparameters}
    return {**cut, **({"eps": EPS} if cls.adversarial else {})}


@pytest.fixture(scope="module")
def small_train():
    return load_data("builtin:digits:train", n_examples=256, seed=0)


def _trainer(method: str, epochs: int = 2, seed: int = 0, **extra) -> Trainer:
    torch.manual_seed(seed)
    cfg = TrainConfig(method=method, epochs=epochs, batch_size=64, seed=seed, **{**options(method), **extra})
    return Trainer(DigitsCNN(), cfg, architecture={"factory": "zoo:digits-cnn"}, device="cpu", verbose=False)


def test_methods_listed():
    assert available() == list(METHODS) == sorted(METHODS)
    assert {"standard", "pgd-at", "trades", "fast-at", "distillation"} <= set(METHODS)
    assert "distillation-teacher" not in METHODS  # a helper of distillation, not a method of its own


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_writes_a_loadable_folder(method, small_train, tmp_path):
    trainer = _trainer(method)
    before = {k: v.clone() for k, v in trainer.mut.module.state_dict().items()}
    result = trainer.fit(small_train, output=tmp_path / "run")
    after = result.module.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "no weight changed"
    assert len(result.log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.log)
    # The loss went down from the first to the last epoch.
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    out = tmp_path / "run"
    for name in ("model.safetensors", "model.json", "training_curve.png", "train_log.jsonl", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = json.loads((out / "model.json").read_text())
    assert card["architecture"] == {"factory": "zoo:digits-cnn"}
    assert card["training"]["method"] == method
    assert card["training"]["config"]["method"] == method
    assert card["data"]["train"]["sha256"] and card["tool_version"]
    assert card["metrics"]["epochs_run"] == 2
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss", "val_clean_accuracy", "val_robust_accuracy", "time_s"} <= set(rows[0])
    if options(method).get("eps"):
        assert rows[0]["val_robust_accuracy"] is not None
    loaded = load_model(str(out), device="cpu")
    x = small_train.x[:32]
    with torch.no_grad():
        assert torch.equal(loaded.predict(x), result.model.predict(x))
    if method == "distillation":
        assert (out / "teacher" / "model.json").exists()
        assert "broken" in card["training"]["warning"]


def test_inner_attacks_leave_weights_mode_and_grads_alone(small_train):
    for method in [m for m in METHODS if get_objective_class(m).adversarial]:
        trainer = _trainer(method)
        obj = get_objective_class(method)(trainer.config, trainer.mut, torch.Generator().manual_seed(0))
        net = trainer.mut.net
        net.train()
        x, y = small_train.x[:16], small_train.y[:16]
        before = {k: v.clone() for k, v in net.state_dict().items()}
        loss, logits = obj.loss(x, y)
        assert net.training, "the objective must restore train mode"
        assert all(p.requires_grad for p in net.parameters())
        assert all(p.grad is None for p in net.parameters()), f"{method}: the inner attack leaked gradients"
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        loss.backward()
        assert all(p.grad is not None for p in net.parameters())


def test_perturb_batch_attacks_every_sample_with_full_budget(digits_model, digits_small):
    from attacks.registry import get_attack

    x, y = digits_small.x[:64], digits_small.y[:64].clone()
    y[:8] = (y[:8] + 1) % 10  # misclassified on purpose: they must be attacked too
    pgd = get_attack("pgd", steps=5, random_start=False)
    flags = [p.requires_grad for p in digits_model.net.parameters()]
    x_adv = pgd.perturb_batch(digits_model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
    delta = (x_adv - x).flatten(1)
    assert delta.abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    # No early stop: every sample moved, and 5 sign steps of 0.05 from the clean input reach the boundary.
    assert bool((delta.abs().amax(dim=1) > 0.09).all())
    assert [p.requires_grad for p in digits_model.net.parameters()] == flags
    assert all(p.grad is None for p in digits_model.net.parameters())


def _kill_after(epoch: int, monkeypatch):
    real = ckpt.save

    def save(folder, state):
        real(folder, state)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ckpt, "save", save)
    return real


@pytest.mark.parametrize("method", ["pgd-at", "fast-at"])
def test_killed_and_resumed_run_ends_with_the_same_weights(method, small_train, tmp_path, monkeypatch):
    full = _trainer(method, epochs=3).fit(small_train, output=tmp_path / "full")
    real = _kill_after(1, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _trainer(method, epochs=3).fit(small_train, output=tmp_path / "cut")
    monkeypatch.setattr(ckpt, "save", real)
    # Killed right after the epoch-1 checkpoint was written (before the log file was updated).
    assert ckpt.load(tmp_path / "cut")["epoch"] == 1
    resumed = _trainer(method, epochs=3).fit(small_train, output=tmp_path / "cut", resume=True)
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def strip(rows):
        return [{k: v for k, v in r.items() if "time" not in k} for r in rows]

    assert strip(full.log) == strip(resumed.log)
    assert {k: v for k, v in full.metrics.items() if "time" not in k} == {
        k: v for k, v in resumed.metrics.items() if "time" not in k
    }


def test_output_holding_another_run_is_refused(small_train, tmp_path):
    from robustness.core.errors import UsageError

    _trainer("standard", epochs=1).fit(small_train, output=tmp_path)
    with pytest.raises(UsageError, match="already holds this run"):
        _trainer("standard", epochs=1).fit(small_train, output=tmp_path)
    with pytest.raises(UsageError, match="different run.*config.epochs"):
        _trainer("standard", epochs=2).fit(small_train, output=tmp_path, resume=True)


def test_fast_at_collapse_guard_stops_and_keeps_the_best_epoch(small_train, monkeypatch):
    """Held-out PGD accuracy 0.30, 0.50, then 0.10 (a collapse): stop after epoch 3, keep epoch 2."""
    trainer = _trainer("fast-at", epochs=6)
    scripted = iter([0.30, 0.50, 0.10, 0.60, 0.60, 0.60])
    kept = {}

    def fake_validate(epoch):
        r = next(scripted)
        if r == 0.50:
            kept.update({k: v.clone() for k, v in trainer.mut.module.state_dict().items()})
        return {"val_clean_accuracy": 0.9, "val_robust_accuracy": r}

    monkeypatch.setattr(trainer, "_validate", fake_validate)
    result = trainer.fit(small_train)
    assert len(result.log) == 3
    assert result.stopped and "catastrophic overfitting" in result.stopped
    assert result.metrics["selected_epoch"] == 2 and result.metrics["val_robust_accuracy"] == 0.50
    assert all(torch.equal(kept[k], v) for k, v in result.module.state_dict().items())


def test_patience_stops_early(small_train):
    result = _trainer("standard", epochs=30, patience=1, lr=1e-6).fit(small_train)
    assert result.stopped and "early stop" in result.stopped
    assert len(result.log) < 30


def test_cpu_training_is_deterministic(small_train):
    a = _trainer("trades", epochs=1).fit(small_train).module.state_dict()
    b = _trainer("trades", epochs=1).fit(small_train).module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
