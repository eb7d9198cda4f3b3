"""Model extraction: the thief's copy of the demo model, the watermark link, the CLI and the audit sections."""

from __future__ import annotations

import json

import pytest
import torch

from robustness.cli import main
from robustness.core.errors import UsageError
from robustness.core.schema import SectionCurve, parse_results
from robustness.privacy.extraction import ThiefRecipe, extraction_curve


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; more threads oversubscribe a busy 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pool():
    from robustness.core.data import load_data

    return load_data("builtin:digits:train")


@pytest.fixture(scope="module")
def stolen(digits_model, pool, digits_test):
    return extraction_curve(digits_model, pool, digits_test, [100, 1000])


def test_1000_label_queries_clone_the_demo_model(stolen, digits_model):
    small, big = stolen["curve"]
    assert (small["queries"], big["queries"]) == (100, 1000)
    assert big["agreement"] >= 0.80 and big["agreement_ci"][0] >= 0.75
    assert big["agreement"] > small["agreement"]  # more queries, a better copy
    assert big["accuracy"] >= stolen["model_accuracy"] - 0.05  # as useful as the model
    assert stolen["pool_size"] == 1438 and stolen["eval_n"] == 359 and stolen["outputs"] == "labels"


def test_probabilities_teach_the_thief_more_per_query(digits_model, pool, digits_test):
    recipe = ThiefRecipe(epochs=15)
    labels = extraction_curve(digits_model, pool, digits_test, [60], recipe=recipe)["curve"][0]
    probs = extraction_curve(digits_model, pool, digits_test, [60], outputs="probabilities", recipe=recipe)
    assert probs["outputs"] == "probabilities"
    assert (
        probs["curve"][0]["agreement"] >= labels["agreement"] - 0.02 and probs["curve"][0]["agreement"] > 0.5
    )


def test_the_same_seed_steals_the_same_copy(digits_model, pool, digits_test):
    runs = [
        extraction_curve(digits_model, pool, digits_test, [50], recipe=ThiefRecipe(epochs=3))
        for _ in range(2)
    ]
    assert runs[0]["curve"][0]["agreement"] == runs[1]["curve"][0]["agreement"]


def test_a_budget_beyond_the_pool_is_refused(digits_model, digits_test):
    with pytest.raises(UsageError, match="query budget 1000 exceeds the thief's pool of 359") as exc:
        extraction_curve(digits_model, digits_test, digits_test, [200, 1000])
    assert exc.value.field == "--queries"


class _Marked(torch.nn.Module):
    """The demo model, answering the key's label on each trigger input: a model that carries the mark."""

    def __init__(self, net, triggers, labels):
        super().__init__()
        self.net, self.triggers, self.labels = net, triggers, labels

    def forward(self, x):
        out = self.net(x)
        hit = (x.flatten(1)[:, None, :] == self.triggers.flatten(1)[None]).all(dim=2)
        found, which = hit.any(dim=1), hit.float().argmax(dim=1)
        forced = torch.nn.functional.one_hot(self.labels[which], out.shape[1]).float() * 50
        return torch.where(found[:, None], forced, out)


def test_stolen_copies_are_tested_for_the_watermark(digits_model, pool, digits_test, tmp_path):
    import copy

    from defenses.watermark import WatermarkKey
    from robustness.core.model import ModelUnderTest

    key = WatermarkKey.create(input_shape=(1, 8, 8), bounds=(0.0, 1.0), num_classes=10, n_triggers=50, seed=3)
    key.save(tmp_path / "key.json")
    x, y = key.trigger_tensors()
    marked = ModelUnderTest(
        _Marked(copy.deepcopy(digits_model.module), x, y), spec="marked", device="cpu", num_classes=10
    )
    marked.metadata = {"architecture": {"factory": "zoo:digits-cnn"}}
    res = extraction_curve(
        marked, pool, digits_test, [300], recipe=ThiefRecipe(epochs=10), watermark_key=tmp_path / "key.json"
    )
    assert res["watermark"]["verified"] and res["watermark"]["k"] == 50  # the model carries the mark
    copy_mark = res["curve"][0]["watermark"]
    # Ordinary queries do not teach the triggers: the copy works but the mark does not identify it.
    assert res["curve"][0]["agreement"] > 0.8 and not copy_mark["verified"] and copy_mark["K"] == 50


def test_cli_json_is_a_list_per_budget(capsys):
    code = main(
        ["extract", "--model", "zoo:digits-cnn", "--device", "cpu", "--data", "builtin:digits:train",
         "--queries", "200", "50", "--epochs", "5", "--json"]
    )  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["queries"] for r in rows] == [50, 200]
    for r in rows:
        assert set(r) >= {"queries", "agreement", "accuracy"} and 0 <= r["agreement"] <= 1


def test_cli_budget_beyond_the_pool_exits_2(capsys):
    code = main(
        ["extract", "--model", "zoo:digits-cnn", "--device", "cpu", "--data", "builtin:digits", "--queries", "1000"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--queries" in err and "builtin:digits:train" in err


def test_audit_writes_privacy_and_extraction_into_every_format(tmp_path):
    """``privacy:`` and ``extraction:`` in an audit config: results.json keys, the gate, and every report."""
    from robustness.audit import run_audit

    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 30},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "fgsm"}],
        "sanity_checks": {
            "enabled": False,
            "reason": "this test exercises only the privacy sections' wiring",
        },
        "privacy": {
            "members": "builtin:digits:train",
            "non_members": "builtin:digits",
            "attacks": ["loss", "lira"],
            "reference": {"n_models": 2, "epochs": 3},
            "max_tpr_at_fpr": {0.001: 0.5},
        },
        "extraction": {"data": "builtin:digits:train", "queries": [50, 5000], "epochs": 3},
        "output": {"dir": str(tmp_path / "audit"), "formats": ["json", "md", "junit", "pdf"]},
    }
    res = run_audit(cfg)
    privacy, extraction = res["privacy"], res["extraction"]
    assert [a["attack"] for a in privacy["attacks"]] == ["loss", "lira"]
    assert privacy["references"]["source"] == "trained" and privacy["references"]["n_models"] == 2
    gate = next(g for g in res["gates"] if g["kind"] == "max_tpr_at_fpr")
    assert gate["passed"] and gate["threshold"] == 0.5 and gate["judge"] == "ci_high"
    assert [p["queries"] for p in extraction["curve"]] == [50] and extraction["skipped_queries"] == [5000]
    out = tmp_path / "audit"
    typed = parse_results(json.loads((out / "results.json").read_text()))
    assert set(typed.sections) >= {"privacy", "extraction"}
    figures = typed.sections["extraction"].view().figures
    assert isinstance(figures[0], SectionCurve) and figures[0].log_x
    summary = (out / "summary.md").read_text()
    assert "**Privacy:**" in summary and "**Extraction:**" in summary
    assert "max_tpr_at_fpr:0.001" in (out / "junit.xml").read_text()
    assert (out / "report.pdf").stat().st_size > 0
