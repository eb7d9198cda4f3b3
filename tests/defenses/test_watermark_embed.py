"""Embedding a trigger-set watermark through the trainer, and the embed/verify CLI, on the digits demo."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from defenses.watermark import load_key, verify
from robustness.cli import main
from robustness.core.model import load_model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; on a busy 2-core runner, more threads oversubscribe it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """``robustness watermark embed`` on the demo model, once for the module."""
    folder = tmp_path_factory.mktemp("wm")
    key, out = folder / "key.json", folder / "marked"
    argv = [
        "watermark", "embed", "--model", "zoo:digits-cnn", "--device", "cpu",
        "--data", "builtin:digits:train", "--val-data", "builtin:digits",
        "--key-out", str(key), "--output", str(out), "--seed", "7", "--json",
    ]  # fmt: skip
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, json.loads(buf.getvalue()), key, out, argv


def _accuracy(model, data) -> float:
    return float((model.predict(data.x).cpu() == data.y).float().mean())


def test_marked_model_verifies_at_small_cost(embedded, digits_model, digits_test):
    code, report, key_path, out, _ = embedded
    assert code == 0 and report["ok"]
    assert report["after"]["trigger_accuracy"] == 1.0 and report["before"]["trigger_accuracy"] < 0.3
    marked = load_model(str(out), device="cpu")
    res = verify(marked, key_path)
    assert res["verified"] and res["p_value"] < 1e-6 and res["k"] == 100
    # At most 1 point of clean accuracy lost against the unmarked model, on the held-out test split.
    unmarked_acc, marked_acc = _accuracy(digits_model, digits_test), _accuracy(marked, digits_test)
    assert unmarked_acc - marked_acc <= 0.01, (unmarked_acc, marked_acc)
    assert report["clean_accuracy_cost"] == pytest.approx(unmarked_acc - marked_acc)


def test_card_holds_the_commitment_not_the_key(embedded):
    _, report, key_path, out, _ = embedded
    card = json.loads((out / "model.json").read_text())
    key = load_key(key_path)
    assert card["watermark"]["key_sha256"] == key.commitment() == report["key_sha256"]
    assert card["watermark"]["n_triggers"] == 100 and card["watermark"]["trigger_accuracy"] == 1.0
    assert card["architecture"] == {"factory": "zoo:digits-cnn"} and card["training"]["method"] == "standard"
    text = (out / "model.json").read_text()
    assert key.nonce not in text and '"labels"' not in text


def test_independently_trained_models_do_not_verify(embedded, digits_test):
    """Five unmarked models (different seeds, short training) all fail at alpha = 1e-6; as references
    they give a false-positive rate of 0 and the marked model still verifies against their null."""
    from robustness.zoo import train_digits_cnn

    _, _, key_path, out, _ = embedded
    unmarked = [load_model(train_digits_cnn(seed=100 + s, epochs=2), device="cpu") for s in range(5)]
    for m in unmarked:
        assert _accuracy(m, digits_test) > 0.85  # real models, not noise
        res = verify(m, key_path)
        assert not res["verified"] and res["p_value"] > 1e-3, res
    res = verify(load_model(str(out), device="cpu"), key_path, reference_models=unmarked)
    assert res["false_positive_rate"] == 0.0 and res["verified"] and res["p_value"] < 1e-6


def test_cli_verify_marked_and_unmarked(embedded, capsys):
    _, _, key_path, out, _ = embedded
    assert main(["watermark", "verify", "--model", str(out), "--device", "cpu", "--key", str(key_path)]) == 0
    text = capsys.readouterr().out
    assert "k/K = 100/100" in text and "p0 = " in text and "p-value" in text and "VERIFIED" in text
    assert "commitment matches" in text
    assert (
        main(["watermark", "verify", "--model", "zoo:digits-cnn", "--device", "cpu", "--key", str(key_path)])
        == 1
    )
    assert "NOT VERIFIED" in capsys.readouterr().out


def test_cli_embed_never_overwrites_a_key_and_resumes(embedded, capsys):
    code, report, key_path, out, argv = embedded
    before = key_path.read_text()
    assert main([a for a in argv if a != "--json"]) == 2
    assert "already exists" in capsys.readouterr().err
    # Resuming the finished run reuses the key and rewrites the same model and card.
    assert main([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert key_path.read_text() == before and again["key_sha256"] == report["key_sha256"]
    assert again["after"] == report["after"]
    assert json.loads((out / "model.json").read_text())["watermark"]["key_sha256"] == report["key_sha256"]


def test_trigger_training_set_mixes_in_proportion(digits_test):
    from defenses.watermark import WatermarkKey, trigger_training_set

    key = WatermarkKey.create(input_shape=(1, 8, 8), bounds=(0, 1), num_classes=10, seed=1)
    mixed = trigger_training_set(digits_test, key, 0.35)
    repeats = mixed.meta["trigger_repeats"]
    assert len(mixed) == len(digits_test) + 100 * repeats
    share = 100 * repeats / len(mixed)
    assert 0.3 <= share <= 0.45
    assert torch.equal(mixed.x[len(digits_test) : len(digits_test) + 100], key.trigger_tensors()[0])


def test_audit_with_watermark_section(embedded, tmp_path):
    """An audit config with ``watermark:`` adds the results key, the gate, and the report sections."""
    from robustness.audit import run_audit

    _, _, key, out, _ = embedded
    cfg = {
        "model": {"spec": str(out), "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 30},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "apgd-ce", "params": {"steps": 10}}],
        "sanity_checks": {"enabled": False, "reason": "this test exercises only the watermark wiring"},
        "watermark": {"key": str(key), "surrogates": ["prune-50"]},
        "output": {"dir": str(tmp_path / "audit"), "formats": ["json", "md", "junit"]},
    }
    res = run_audit(cfg)
    wm = res["watermark"]
    assert wm["verified"] and wm["k"] == wm["K"] == 100 and wm["p_value"] < 1e-6
    assert [s["name"] for s in wm["surrogates"]] == ["prune-50"]
    gate = next(g for g in res["gates"] if g["name"] == "watermark_verified")
    assert gate["passed"] and gate["threshold"] == 1e-6
    saved = json.loads((tmp_path / "audit" / "results.json").read_text())
    assert saved["watermark"]["k"] == 100
    assert "watermark_verified" in (tmp_path / "audit" / "junit.xml").read_text()

    # The unmarked demo model fails the same gate: ownership cannot be shown.
    cfg["model"] = {"spec": "zoo:digits-cnn", "device": "cpu"}
    cfg["watermark"]["surrogates"] = []
    cfg["output"]["dir"] = str(tmp_path / "audit-unmarked")
    res = run_audit(cfg)
    assert not res["watermark"]["verified"]
    assert res["verdict"] == "fail"
