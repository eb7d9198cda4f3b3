"""The built-in zoo: deterministic training, accuracy, and a cache that is verified, never trusted."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robustness import zoo
from robustness.core.errors import ModelError
from robustness.core.io import sha256_file
from robustness.core.metrics import classification_metrics
from robustness.core.model import load_model
from robustness.core.registry import Registry

NAME = "digits-cnn"


def _files(folder: Path) -> tuple[Path, Path]:
    return folder / f"{NAME}.v{zoo.CACHE_VERSION}.safetensors", folder / f"{NAME}.v{zoo.CACHE_VERSION}.json"


def _replace_entry(monkeypatch, entry: zoo.ZooEntry) -> None:
    """For this test, a zoo whose entry of ``entry.name`` is ``entry`` (a registry refuses a second one)."""
    registry = Registry("zoo model", error=ModelError, field="model")
    for name, known in zoo.ZOO.items().items():
        registry.add(name, entry if name == entry.name else known)
    monkeypatch.setattr(zoo, "ZOO", registry)


@pytest.fixture
def shared_cache(digits_model) -> Path:
    """The session's zoo cache (the fixture has trained or verified it)."""
    return zoo.cache_dir()


def test_accuracy(digits_model, digits_test):
    pred = digits_model.predict(digits_test.x)
    m = classification_metrics(digits_test.y.numpy(), pred.numpy(), 10)
    assert m["n"] == 359
    assert m["accuracy"] >= 0.97
    assert m["accuracy_ci"][0] >= 0.95  # with 359 samples the whole interval is high


def test_training_is_deterministic(tmp_path, monkeypatch):
    """Two trainings from scratch in empty caches write bit-identical weight files.

    One epoch each keeps this fast on 2 cores; the seeds, initialisation, batch order and
    optimiser are the same code path as the full 20-epoch training.
    """
    short = dataclasses.replace(zoo.entry(NAME), train=functools.partial(zoo.train_digits_cnn, epochs=1))
    _replace_entry(monkeypatch, short)
    hashes = []
    for run in ("a", "b"):
        monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path / run))
        assert zoo.cache_dir() == tmp_path / run
        torch.manual_seed(1234 if run == "a" else 99)  # the global RNG state must not matter
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an empty cache is not a corrupt one: no warning
            zoo.load(NAME)
        weights, record = _files(tmp_path / run)
        assert json.loads(record.read_text())["sha256"] == sha256_file(weights)
        hashes.append(sha256_file(weights))
    assert hashes[0] == hashes[1]


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("ROBUSTNESS_SLOW_TESTS"), reason="set ROBUSTNESS_SLOW_TESTS=1 (a full training)"
)
def test_full_training_reproduces_the_cache(tmp_path, monkeypatch, shared_cache, digits_model):
    """The full training, repeated in an empty cache, reproduces the cached weights bit for bit."""
    monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path))
    fresh = load_model(f"zoo:{NAME}", device="cpu")
    weights, _ = _files(tmp_path)
    shared_weights, shared_record = _files(shared_cache)
    assert (
        sha256_file(weights) == json.loads(shared_record.read_text())["sha256"] == sha256_file(shared_weights)
    )
    assert fresh.sha256() == digits_model.sha256()


@pytest.fixture
def cache_copy(tmp_path, monkeypatch, shared_cache):
    """A private copy of the trained cache, and a zoo entry whose 'training' is counted and instant."""
    for f in _files(shared_cache):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path))
    good, _ = zoo.load(NAME)  # verified copy of the real weights, without training
    calls = []

    def fake_train():
        calls.append(1)
        return good

    _replace_entry(monkeypatch, dataclasses.replace(zoo.entry(NAME), train=fake_train))
    return tmp_path, good, calls


def test_verified_cache_is_used(cache_copy):
    folder, good, calls = cache_copy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module, meta = zoo.load(NAME)
    assert calls == []
    assert meta["zoo"] == NAME and meta["bounds"] == (0.0, 1.0) and meta["num_classes"] == 10
    assert meta["architecture"] == {"factory": f"zoo:{NAME}"}
    assert not module.training
    for k, v in good.state_dict().items():
        assert torch.equal(module.state_dict()[k], v)


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "valid-but-different", "bad-record", "wrong-hash"]
)
def test_corrupt_cache_is_rebuilt(cache_copy, damage):
    folder, good, calls = cache_copy
    weights, record = _files(folder)
    if damage == "garbage":
        weights.write_bytes(b"\x00not safetensors at all")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "valid-but-different":
        # a well-formed file with other weights: only the hash check can catch it
        state = {k: v.clone() for k, v in good.state_dict().items()}
        state["classifier.3.bias"] += 1.0
        save_file(state, str(weights))
    elif damage == "bad-record":
        record.write_text("{not json")
    else:
        record.write_text(json.dumps({"name": NAME, "sha256": "0" * 64, "cache_version": zoo.CACHE_VERSION}))
    with pytest.warns(UserWarning, match=f"zoo:{NAME}: cached weights at .* failed verification.*rebuilding"):
        module, _ = zoo.load(NAME)
    assert calls == [1]  # rebuilt, never trusted
    for k, v in good.state_dict().items():
        assert torch.equal(module.state_dict()[k], v)
    assert json.loads(record.read_text())["sha256"] == sha256_file(weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.load(NAME)  # the rebuilt cache verifies
    assert calls == [1]


def test_missing_record_is_rebuilt(cache_copy):
    folder, _, calls = cache_copy
    _files(folder)[1].unlink()
    zoo.load(NAME)
    assert calls == [1] and _files(folder)[1].exists()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ROBUSTNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "xdg" / "robustness-audit"


def test_architecture_and_errors():
    net = zoo.architecture(NAME)
    assert isinstance(net, zoo.DigitsCNN)
    assert sum(p.numel() for p in net.parameters()) == 151_306
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ModelError, match="unknown zoo model 'nope'.*Known: digits-cnn.*zoo:digits-cnn"):
        zoo.load("nope")
    with pytest.raises(ModelError, match="unknown zoo model"):
        zoo.architecture("nope")


def test_models_lists_the_registry(capsys):
    from robustness.cli import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["spec"] for row in rows] == [f"zoo:{name}" for name in zoo.ZOO.names()]
    assert {"zoo:digits-cnn", "zoo:digits-cnn-pgdat"} <= {row["spec"] for row in rows}


def _linear() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def test_a_registered_entry_loads_by_spec(monkeypatch, tmp_path):
    """A plug-in's entry, registered with the call its module makes, loads as zoo:NAME."""
    _replace_entry(monkeypatch, zoo.entry(NAME))  # a private copy of the zoo for this test
    monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path))
    calls = []

    def train_tiny() -> torch.nn.Module:
        calls.append(1)
        return _linear()

    tiny = zoo.register(zoo.ZooEntry("tiny-linear", "A linear model for this test.", _linear, train_tiny))
    with pytest.raises(ValueError, match="registered twice"):
        zoo.register(dataclasses.replace(tiny, description="another"))
    assert "tiny-linear" in zoo.ZooScheme().names()
    model = load_model("zoo:tiny-linear", device="cpu")
    assert calls == [1] and model.logits(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert isinstance(zoo.architecture("tiny-linear"), torch.nn.Sequential)


def test_atomic_writes(tmp_path):
    """The cache (and every output) is written through a temporary file and a rename."""
    from robustness.core.io import (
        atomic_write,
        atomic_write_bytes,
        atomic_write_json,
        atomic_write_text,
        sha256_bytes,
    )

    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": np.float32(0.5), "b": np.arange(3), "p": Path("x/y")})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [0, 1, 2], "p": "x/y"}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640  # mode kept
    with pytest.raises(TypeError, match="not JSON serialisable"):
        atomic_write_json(target, {"x": object()})

    def crash_midway(tmp: str) -> None:
        Path(tmp).write_text("half of the new cont")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash_midway)
    assert target.read_text() == "new"  # a failed write leaves the old file whole
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # and no temporary file behind
    atomic_write_bytes(tmp_path / "b.bin", b"abc")
    assert sha256_file(tmp_path / "b.bin") == sha256_bytes(b"abc") == hashlib.sha256(b"abc").hexdigest()
