"""Watermark keys and the ownership test (defenses/watermark/), removal surrogates and the audit section
(robustness/watermark/)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from defenses.watermark import (
    DEFAULT_ALPHA,
    KeyFileError,
    WatermarkKey,
    binomial_p_value,
    generate_triggers,
    load_key,
    max_class_share,
    verify,
)
from robustness.cli import main
from robustness.watermark import (
    DEFAULT_SURROGATES,
    WatermarkConfig,
    parse_surrogate,
    survival_table,
    watermark_section,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; on a busy 2-core runner, more threads oversubscribe it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _key(seed: int = 7, shape=(1, 8, 8), n: int = 100) -> WatermarkKey:
    return WatermarkKey.create(input_shape=shape, bounds=(0.0, 1.0), num_classes=10, n_triggers=n, seed=seed)


class Lookup(nn.Module):
    """Answers ``answers[i]`` for the trigger nearest to the input: a model that 'memorised' a key."""

    def __init__(self, triggers: torch.Tensor, answers: torch.Tensor, num_classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("t", triggers.flatten(1))
        self.register_buffer("onehot", nn.functional.one_hot(answers, num_classes).float() * 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.onehot[torch.cdist(x.flatten(1), self.t).argmin(dim=1)]


# -- triggers and the key file ---------------------------------------------------------------


def test_triggers_are_reproducible_in_bounds_and_pinned():
    a = generate_triggers(3, 5, (1, 8, 8), (0.0, 1.0))
    assert a.shape == (5, 1, 8, 8) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0 and 0.4 < a.mean() < 0.6
    assert np.array_equal(a, generate_triggers(3, 5, (1, 8, 8), (0.0, 1.0)))
    assert not np.array_equal(a, generate_triggers(4, 5, (1, 8, 8), (0.0, 1.0)))
    # PCG64 raw output is stable across NumPy versions: these bytes must never change, or old keys break.
    assert round(float(a[0, 0, 0, 0]) * 255) == 248 and round(float(a[4, 0, 7, 7]) * 255) == 55
    b = generate_triggers(3, 2, (3, 4, 4), (-1.0, 2.0))
    assert b.min() >= -1.0 and b.max() <= 2.0


def test_key_roundtrip_and_commitment(tmp_path):
    key = _key()
    assert key.n_triggers == 100 and set(key.labels) <= set(range(10)) and len(set(key.labels)) >= 8
    path = key.save(tmp_path / "k.json")
    loaded = load_key(path)
    assert loaded == key and loaded.commitment() == key.commitment()
    assert np.array_equal(loaded.triggers(), key.triggers())
    # The commitment is over canonical JSON: re-indenting the file does not change it.
    path.write_text(json.dumps(json.loads(path.read_text()), indent=7))
    assert load_key(path).commitment() == key.commitment()
    # Two keys with the same seed still differ in their nonce, so a commitment hides a guessable seed.
    assert _key().commitment() != key.commitment()
    d = key.to_dict()
    assert d["format_version"] == 1 and d["generator"] == {"name": "uniform-u8", "version": 1, "seed": 7}
    assert d["input_shape"] == [1, 8, 8] and d["bounds"] == [0.0, 1.0] and d["num_classes"] == 10


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, d: p.write_text("{not json"), "not valid JSON"),
        (lambda p, d: p.write_bytes(b"\x00\xff\xfe" * 10), "not valid JSON"),
        (lambda p, d: p.write_text(json.dumps({**d, "format": "other"})), "format"),
        (lambda p, d: p.write_text(json.dumps({**d, "format_version": 9})), "format_version 9"),
        (lambda p, d: p.write_text(json.dumps({k: v for k, v in d.items() if k != "labels"})), "labels"),
        (
            lambda p, d: p.write_text(
                json.dumps({**d, "labels": [(d["labels"][0] + 1) % 10] + d["labels"][1:]})
            ),
            "edited",
        ),
        (lambda p, d: p.write_text(json.dumps({**d, "labels": [99] * 100})), "labels must lie in"),
        (
            lambda p, d: p.write_text(json.dumps({**d, "triggers_sha256": "0" * 64})),
            "does not match its recorded hash",
        ),
        (lambda p, d: p.write_text(json.dumps({**d, "bounds": [1, 0]})), "bounds"),
        (lambda p, d: p.unlink(), "not found"),
    ],
)
def test_corrupt_keys_are_refused_clearly(tmp_path, mutate, message):
    key = _key()
    path = key.save(tmp_path / "k.json")
    mutate(path, key.to_dict())
    with pytest.raises(KeyFileError, match=message) as err:
        load_key(path)
    assert err.value.field == "key" and err.value.fix and err.value.exit_code == 2


# -- statistics ------------------------------------------------------------------------------


def test_binomial_p_value_matches_reference_numbers():
    # reference.md: K=100, p0=0.1: 21 matches give p <= 1e-3, 28 give p <= 1e-6 (27 do not).
    assert binomial_p_value(21, 100, 0.1) <= 1e-3 < binomial_p_value(20, 100, 0.1)
    assert binomial_p_value(28, 100, 0.1) <= 1e-6 < binomial_p_value(27, 100, 0.1)
    exact = sum(math.comb(100, i) * 0.1**i * 0.9 ** (100 - i) for i in range(28, 101))
    assert binomial_p_value(28, 100, 0.1) == pytest.approx(exact, rel=1e-9)
    assert binomial_p_value(0, 100, 0.3) == 1.0
    assert binomial_p_value(100, 100, 0.2) == pytest.approx(0.2**100, rel=1e-9)


def test_max_class_share_is_floored():
    assert max_class_share([3] * 60 + [1] * 40, 10) == 0.6
    assert max_class_share(list(range(10)) * 10, 10) == 0.1
    assert max_class_share([0, 1], 10) == 0.5
    assert max_class_share(list(range(100)), 100) == 0.01


def test_a_model_that_memorised_the_key_verifies_exactly():
    key = _key()
    x, y = key.trigger_tensors()
    from robustness.core.model import load_model

    res = verify(load_model(Lookup(x, y), device="cpu"), key)
    share = max_class_share(list(key.labels), 10)
    assert res["k"] == 100 and res["K"] == 100 and res["verified"]
    assert res["p0"] == pytest.approx(share) and res["p0_method"] == "max-class-share"
    assert res["p_value"] == pytest.approx(share**100, rel=1e-9)
    assert res["match_rate_ci"][1] == 1.0 and 0.96 < res["match_rate_ci"][0] < 0.97
    assert res["false_positive_rate"] is None


def test_collapsed_predictions_cannot_fake_ownership():
    """An unmarked model that sends every trigger to the key's most frequent label matches far above 1/C;
    the max-class-share null absorbs it (with p0 = 1/C it would 'verify')."""
    key = _key()
    x, _ = key.trigger_tensors()
    top = int(np.bincount(key.labels, minlength=10).argmax())
    from robustness.core.model import load_model

    res = verify(load_model(Lookup(x, torch.full((100,), top)), device="cpu"), key)
    assert res["k"] == max(np.bincount(key.labels)) and res["p0"] == 1.0 and res["p_value"] == 1.0
    assert not res["verified"]


def test_reference_models_raise_p0_and_give_a_false_positive_rate():
    key = _key()
    x, y = key.trigger_tensors()
    from robustness.core.model import load_model

    g = torch.Generator().manual_seed(0)
    refs = [load_model(Lookup(x, torch.randint(0, 10, (100,), generator=g)), device="cpu") for _ in range(3)]
    marked = load_model(Lookup(x, y), device="cpu")
    res = verify(marked, key, reference_models=refs)
    assert res["verified"] and res["false_positive_rate"] == 0.0 and len(res["references"]) == 3
    assert res["reference_p0"] > 0.1 and res["p0"] >= res["reference_p0"]
    assert "reference" in res["p0_method"]
    # A reference that is a copy of the marked model is caught as a (true) positive among the references.
    res = verify(marked, key, reference_models=[*refs, marked])
    assert res["false_positive_rate"] == 0.25


def test_unmarked_zoo_model_does_not_verify(digits_model):
    res = verify(digits_model, _key())
    assert not res["verified"] and res["p_value"] > 1e-3 and res["k"] < 30 and res["p0"] >= 0.1


def test_key_for_another_input_shape_is_refused(digits_model, tmp_path, capsys):
    key = _key(shape=(1, 16, 16))
    with pytest.raises(KeyFileError, match=r"shape \[1, 16, 16\]"):
        verify(digits_model, key)
    path = key.save(tmp_path / "k16.json")
    assert (
        main(["watermark", "verify", "--model", "zoo:digits-cnn", "--device", "cpu", "--key", str(path)]) == 2
    )
    assert "[1, 16, 16]" in capsys.readouterr().err


def test_cli_verify_refuses_a_corrupt_key(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "robustness-watermark-key", "format_version": 1, "generator"')
    assert main(["watermark", "verify", "--model", "zoo:digits-cnn", "--key", str(path)]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "not valid JSON" in err and "key" in err
    assert (
        main(["watermark", "verify", "--model", "zoo:digits-cnn", "--key", str(tmp_path / "nope.json")]) == 2
    )
    assert "not found" in capsys.readouterr().err


def test_cli_verify_unmarked_exits_1(tmp_path, capsys):
    path = _key().save(tmp_path / "k.json")
    code = main(
        ["watermark", "verify", "--model", "zoo:digits-cnn", "--device", "cpu", "--key", str(path), "--json"]
    )
    res = json.loads(capsys.readouterr().out)
    assert code == 1 and res["verified"] is False and res["K"] == 100 and res["p_value"] > 1e-6


# -- surrogates and survival -----------------------------------------------------------------


def test_parse_surrogate():
    assert (
        parse_surrogate("prune-30").params == {"amount": 0.3}
        and parse_surrogate("prune-30").name == "prune-30"
    )
    ft = parse_surrogate("finetune:share=0.2,epochs=3")
    assert ft.kind == "finetune" and ft.params["share"] == 0.2 and ft.params["epochs"] == 3
    assert parse_surrogate("extract-copycat:budget=50").params["budget"] == 50
    assert parse_surrogate("finetune").name == "finetune" and ft.name == "finetune:share=0.2,epochs=3"
    assert parse_surrogate("finetune:epochs=10").name == "finetune"  # the default, stated or not
    for bad in (
        "prune-0",
        "prune-100",
        "prune-x",
        "nope",
        "finetune:foo=1",
        "finetune:share=2",
        "extract-copycat:budget=0",
    ):
        from robustness.core.errors import ConfigError

        with pytest.raises(ConfigError):
            parse_surrogate(bad)


def test_config_section():
    cfg = WatermarkConfig(key="k.json")
    assert (
        cfg.alpha == DEFAULT_ALPHA == 1e-6
        and cfg.surrogates == list(DEFAULT_SURROGATES)
        and cfg.reference_models == []
    )
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="extra"):
        WatermarkConfig(key="k.json", alpah=0.1)
    with pytest.raises(ValidationError, match="unknown surrogate"):
        WatermarkConfig(key="k.json", surrogates=["prune-30", "distill"])
    with pytest.raises(ValidationError):
        WatermarkConfig(key="k.json", alpha=0)


@pytest.fixture(scope="module")
def marked(digits_model):
    from defenses.watermark import embed_watermark
    from robustness.core.data import load_data

    key = _key(seed=7)
    res = embed_watermark(digits_model, load_data("builtin:digits:train"), key=key)
    assert res.report["after"]["trigger_accuracy"] == 1.0
    return res.model, key


def test_survival_table_covers_every_surrogate_kind(marked, digits_test):
    model, key = marked
    attack, evaluation = digits_test.subset(range(0, 359, 2)), digits_test.subset(range(1, 359, 2))
    names = [
        "finetune:epochs=5",
        "prune-30",
        "prune-50",
        "prune-70",
        "quantize-int8",
        "extract-copycat:budget=150,epochs=15",
    ]
    rows = survival_table(model, key, evaluation, names, attack_data=attack)
    assert [r["name"] for r in rows] == [
        "finetune:epochs=5",
        "prune-30",
        "prune-50",
        "prune-70",
        "quantize-int8",
        "extract-copycat:budget=150,epochs=15",
    ]
    original = float((model.predict(evaluation.x).cpu() == evaluation.y).float().mean())
    for r in rows:
        assert 0 <= r["clean_accuracy"] <= 1 and 0 <= r["agreement"] <= 1 and r["K"] == 100
        assert r["accuracy_drop"] == pytest.approx(original - r["clean_accuracy"])
        assert r["p_value"] == pytest.approx(binomial_p_value(r["k"], 100, r["p0"]))
        assert r["verified"] == (r["p_value"] <= 1e-6) and r["survived"] == r["verified"]
        assert r["removed"] == ((not r["verified"]) and r["accuracy_drop"] <= 0.05)
    by = {r["name"].split(":")[0]: r for r in rows}
    # Mild pruning and int8 quantization barely change the function: the mark survives and agreement is high.
    for name in ("prune-30", "quantize-int8"):
        assert by[name]["verified"] and by[name]["agreement"] > 0.95 and by[name]["k"] >= 90
    assert by["extract-copycat"]["params"]["queries"] == 150
    # The thief never queried a trigger: it learns the task but not the mark.
    assert not by["extract-copycat"]["verified"] and by["extract-copycat"]["k"] < 30


def test_watermark_section_shape(marked, digits_test):
    model, key = marked
    sec = watermark_section(model, key, digits_test, surrogates=["prune-50", "quantize-int8"])
    for k in (
        "k",
        "K",
        "p0",
        "p0_method",
        "p_value",
        "match_rate_ci",
        "alpha",
        "verified",
        "false_positive_rate",
    ):
        assert k in sec
    assert (
        sec["verified"] and sec["k"] == 100 and sec["p_value"] < 1e-6 and sec["false_positive_rate"] is None
    )
    assert sec["eval_n"] == 359 - 359 // 2
    assert [s["name"] for s in sec["surrogates"]] == ["prune-50", "quantize-int8"]
    for s in sec["surrogates"]:
        assert {"name", "clean_accuracy", "agreement", "k", "p_value", "verified"} <= set(s)
    json.dumps(sec)  # plain data, ready for results.json
    with pytest.raises(KeyFileError, match="shape"):
        watermark_section(model, _key(shape=(1, 4, 4)), digits_test, surrogates=[])


def test_removal_attacks_train_through_the_trainer(marked, digits_test, monkeypatch):
    """Fine-tuning and the extraction thief are trained by defenses.trainer (method standard), seeded."""
    from defenses.trainer import Trainer
    from robustness.watermark import make_surrogate

    runs = []
    fit = Trainer.fit

    def recording_fit(self, train, **kwargs):
        runs.append((self.config.method, self.config.epochs, self.config.lr, len(train)))
        return fit(self, train, **kwargs)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    model, _ = marked
    attack = digits_test.subset(range(0, 359, 2))  # 180 samples
    tuned, details = make_surrogate(model, parse_surrogate("finetune:epochs=1"), attack, seed=3)
    again, _ = make_surrogate(model, parse_surrogate("finetune:epochs=1"), attack, seed=3)
    thief, info = make_surrogate(
        model, parse_surrogate("extract-knockoff:budget=60,epochs=2"), attack, seed=3
    )
    assert runs == [("standard", 1, 1e-3, 90), ("standard", 1, 1e-3, 90), ("standard", 2, 1e-3, 60)]
    assert details["n_samples"] == 90 and info["queries"] == 60
    for name, weight in tuned.net.state_dict().items():  # the same seed, the same surrogate
        assert torch.equal(weight, again.net.state_dict()[name]), name
    assert not any(prm.requires_grad for prm in thief.net.parameters()) and not thief.net.training


def test_reading_the_config_block_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, robustness.watermark.survival; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]
