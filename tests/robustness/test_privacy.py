"""Membership inference: the metrics, the attacks on an overfit model, the section, the gate and the CLI."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from robustness.cli import main
from robustness.core.errors import ConfigError
from robustness.core.schema import ResultsError, SectionCurve, parse_results
from robustness.privacy.membership import audit_membership
from robustness.privacy.roc import membership_metrics, operating_point

# The overfit target: a fresh digits CNN trained 60 epochs on 100 training samples.
N_MEMBERS, N_NON_MEMBERS, EPOCHS = 100, 300, 60


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train fastest on one thread; more threads oversubscribe a busy 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(data, epochs: int, seed: int):
    from defenses.config import TrainConfig
    from defenses.trainer import Trainer
    from robustness.zoo import DigitsCNN

    torch.manual_seed(seed)
    config = TrainConfig(
        epochs=epochs, batch_size=32, schedule="constant", val_fraction=0.0, select_best=False, seed=seed
    )
    trainer = Trainer(
        DigitsCNN(), config, architecture={"factory": "zoo:digits-cnn"}, device="cpu", verbose=False
    )
    model = trainer.fit(data).model
    model.metadata = {"architecture": {"factory": "zoo:digits-cnn"}}
    return model


@pytest.fixture(scope="module")
def overfit():
    """The overfit model, its members and non-members, and 4 reference models trained with the
    project's trainer on the rest of the train split (no audited sample), like the target."""
    from robustness.core.data import load_data
    from robustness.privacy.references import ReferenceRecipe, exclude_samples, train_references

    train, test = load_data("builtin:digits:train"), load_data("builtin:digits")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    members = train.subset(perm[:N_MEMBERS].sort().values)
    non_members = test.subset(range(N_NON_MEMBERS))
    model = _train(members, EPOCHS, seed=0)
    pool = exclude_samples(train, members, non_members)
    recipe = ReferenceRecipe(
        n_models=4, epochs=EPOCHS, batch_size=32, schedule="constant", share=2 * N_MEMBERS / len(pool)
    )
    refs = train_references(recipe, model, pool, pool_note="the rest of the train split")
    result = audit_membership(model, members, non_members, ["loss", "rmia", "lira"], refs)
    return model, members, non_members, test, refs, {a["attack"]: a for a in result["attacks"]}, result


# -- the metrics -----------------------------------------------------------------------------------


def test_operating_points_count_exactly():
    members = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 1.0])
    non_members = np.array([7.5, 4.0, 3.0, 2.0, 0.0] * 20)  # 100 non-members, one of them at 7.5 x 20
    p = operating_point(members, non_members, 0.0)
    assert (p.fp, p.tp, p.threshold) == (0, 2, 7.5)  # strictly above the highest non-member
    p = operating_point(members, non_members, 0.01)  # 1 false positive allowed, but 20 tie at 7.5
    assert p.fp == 0 and p.tp == 2 and p.resolved  # ties never sneak in
    p = operating_point(members, non_members, 0.2)
    assert (p.fp, p.tp) == (20, 5)
    assert math.isclose(p.tpr, 5 / 6) and math.isclose(p.fpr_achieved, 0.2)
    # 100 non-members cannot resolve FPR 0.1%: read at the first false positive, flagged.
    few = operating_point(members, np.arange(100.0) / 100, 0.001)
    assert not few.resolved and few.fp == 1 and few.tp == 6


def test_auc_matches_sklearn_and_the_null_is_calibrated():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    m, n = rng.normal(0.3, 1, 400), rng.normal(0, 1, 500)
    metrics = membership_metrics(m, n)
    assert math.isclose(metrics["auc"], roc_auc_score(np.r_[np.ones(400), np.zeros(500)], np.r_[m, n]))
    assert metrics["leak_p_value"] < 0.01 and metrics["auc"] > 0.5 + 3 * metrics["auc_null_sd"]
    # Exchangeable scores: the TPR at 1% FPR stays inside its null range about 95% of the time.
    inside = 0
    for _ in range(200):
        s = rng.normal(size=600)
        p = operating_point(s[:200], s[200:], 0.01).to_dict()
        inside += p["tpr_null_ci"][0] <= p["tpr"] <= p["tpr_null_ci"][1]
    assert inside / 200 >= 0.92
    # ... and the adjusted leak p-value falls under 1% at most about 1% of the time.
    alarms = sum(
        membership_metrics(s[:200], s[200:])["leak_p_value"] < 0.01 for s in rng.normal(size=(100, 600))
    )
    assert alarms <= 4


def test_roc_is_thinned_for_log_axes():
    rng = np.random.default_rng(1)
    metrics = membership_metrics(rng.normal(0.5, 1, 3000), rng.normal(0, 1, 3000))
    fpr, tpr = metrics["roc"]["fpr"], metrics["roc"]["tpr"]
    assert len(fpr) <= 125 and min(fpr) > 0 and fpr == sorted(fpr) and tpr == sorted(tpr)
    assert fpr[-1] == tpr[-1] == 1.0 and math.isclose(fpr[0], 1 / 3000)


# -- the attacks on an overfit model ------------------------------------------------------------------


def test_the_overfit_model_leaks_measurably(overfit):
    *_, attacks, result = overfit
    assert result["accuracy"]["members"] == 1.0 and result["accuracy"]["non_members"] < 0.95
    point = next(p for p in attacks["lira"]["operating_points"] if p["fpr"] == 0.01)
    assert point["resolved"] and point["fp"] == 3
    # LiRA's TPR at 1% FPR lies above the whole range it takes when nothing leaks
    assert point["tpr"] > point["tpr_null_ci"][1] and point["p_value"] < 0.01, point
    for name in ("rmia", "lira"):
        assert attacks[name]["leak_detected"], name
    loss = attacks["loss"]
    assert loss["auc"] > 0.5 + 4 * loss["auc_null_sd"] and loss["leak_detected"]


def test_reference_attacks_are_at_least_as_strong_as_the_loss_threshold(overfit):
    *_, attacks, _ = overfit
    loss = attacks["loss"]["tpr_at_fpr"]["0.01"]
    assert attacks["rmia"]["tpr_at_fpr"]["0.01"] >= loss
    assert attacks["lira"]["tpr_at_fpr"]["0.01"] >= loss
    assert max(attacks["rmia"]["tpr_at_fpr"]["0.01"], attacks["lira"]["tpr_at_fpr"]["0.01"]) >= loss + 0.03
    # RMIA tuned its constant on reference model 1 (its training set is known).
    assert attacks["rmia"]["params"]["a_method"].startswith("grid search")


def test_two_non_member_sets_show_no_leak(overfit):
    model, _, _, test, refs, _, _ = overfit
    # Both halves of the samples the model never saw: membership cannot be told apart.
    a, b = test.subset(range(0, 150)), test.subset(range(150, 300))
    result = audit_membership(model, a, b, ["loss", "rmia", "lira"], refs)
    for attack in result["attacks"]:
        assert abs(attack["auc"] - 0.5) <= 2.5 * attack["auc_null_sd"], attack["attack"]
        assert not attack["leak_detected"], attack["attack"]


def test_per_class_and_most_exposed(overfit):
    _, members, *_, attacks, _ = overfit
    lira = attacks["lira"]
    assert [c["label"] for c in lira["per_class"]] == list(range(10))
    assert sum(c["n_members"] for c in lira["per_class"]) == N_MEMBERS
    exposed = lira["most_exposed"]
    assert len(exposed) == 10 and [e["score"] for e in exposed] == sorted(
        (e["score"] for e in exposed), reverse=True
    )
    assert set(e["id"] for e in exposed) <= set(members.ids)
    assert exposed[0]["flagged_at_fpr"] == 0.0  # the top member scores above every non-member


def test_reference_models_never_include_an_audited_sample(overfit):
    _, members, non_members, _, refs, _, _ = overfit
    from robustness.privacy.references import row_digests

    audited = set(row_digests(members)) | set(row_digests(non_members))
    assert refs.pool is not None and not audited & set(row_digests(refs.pool))
    assert refs.trained_on.sum(dim=1).tolist() == [2 * N_MEMBERS] * 4


def test_strong_attacks_need_reference_models(digits_model, digits_small):
    with pytest.raises(ConfigError, match="needs reference models") as exc:
        audit_membership(digits_model, digits_small, digits_small, ["rmia"])
    assert exc.value.field == "reference_models"


def test_a_pool_made_only_of_audited_samples_is_refused(digits_model):
    from robustness.privacy.audit import privacy_audit

    with pytest.raises(ConfigError, match="reference pool holds 0 samples") as exc:
        privacy_audit(
            digits_model,
            "builtin:digits",
            "builtin:digits:train",
            ["lira"],
            reference_data="builtin:digits:all",
        )
    assert exc.value.field == "reference.data"


# -- the typed result, the gate, the CLI and the audit ---------------------------------------------


def _section(overfit) -> dict:
    *_, result = overfit
    leak = any(a["leak_detected"] for a in result["attacks"])
    return {
        "members": "overfit members",
        "non_members": "test[:300]",
        **result,
        "strongest": "lira",
        "leak_detected": leak,
    }


def test_the_result_is_typed_checked_and_drawn(overfit, tmp_path):
    from reports import markdown

    raw = json.loads((Path(__file__).parents[1] / "reports" / "data" / "results.json").read_text())
    raw["privacy"] = json.loads(json.dumps(_section(overfit)))
    res = parse_results(raw)
    view = res.sections["privacy"].view()
    # 300 non-members resolve 1% FPR but not 0.1%: the summary quotes the lowest resolved one.
    assert view.summary.startswith("lira: TPR 8.00% at 1.0% FPR") and "leak detected" in view.summary
    roc = next(f for f in view.figures if isinstance(f, SectionCurve))
    assert roc.log_x and roc.log_y and [s.name for s in roc.series][-1] == "chance (no leak)"
    assert len(view.table.rows) == 3 and [t.title for t in view.tables][0].startswith("Leakage per class")
    assert "**Privacy:** lira: TPR" in markdown.to_markdown(res)
    bad = copy.deepcopy(raw)
    bad["privacy"]["attacks"][0]["operating_points"][0]["tpr"] = 0.9
    with pytest.raises(ResultsError, match="does not contain its estimate 0.9") as exc:
        parse_results(bad)
    assert exc.value.field == "privacy.attacks[0].operating_points[0].tpr_ci"


def test_the_gate_is_judged_on_the_upper_end(overfit):
    from robustness.audit.sections.privacy import Privacy
    from robustness.privacy.config import PrivacyConfig

    result = _section(overfit)
    upper = max(a["tpr_at_fpr_ci"]["0.01"][1] for a in result["attacks"])
    block = PrivacyConfig(members="x", max_tpr_at_fpr={0.01: upper + 0.01})
    (gate,) = Privacy(None, block).gates(result)
    assert gate["passed"] and gate["value"] == upper and gate["comparator"] == "<="
    block = PrivacyConfig(members="x", max_tpr_at_fpr={0.01: upper - 0.01})
    (gate,) = Privacy(None, block).gates(result)
    assert not gate["passed"] and gate["name"] == "max_tpr_at_fpr:0.01" and gate["eps"] is None
    # The point estimate alone would pass this limit: a low TPR must be shown, not just observed.
    assert max(a["tpr_at_fpr"]["0.01"] for a in result["attacks"]) < upper - 0.01


def test_cli_json(capsys):
    code = main(
        [
            "privacy", "--model", "zoo:digits-cnn", "--device", "cpu", "--members", "builtin:digits:train",
            "--non-members", "builtin:digits", "--attack", "loss", "--n-members", "359", "--json",
        ]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["attack"] == "loss"
    assert (out["n_members"], out["n_non_members"]) == (359, 359)
    assert set(out["tpr_at_fpr"]) == {"0.01", "0.001", "0"} and set(out["tpr_at_fpr_ci"]) == set(
        out["tpr_at_fpr"]
    )
    lo, hi = out["tpr_at_fpr_ci"]["0.01"]
    assert lo <= out["tpr_at_fpr"]["0.01"] <= hi and 0.3 < out["auc"] < 0.8


def test_a_reference_recipe_the_trainer_refuses_is_named_as_the_recipe(digits_model):
    from robustness.privacy.audit import privacy_audit
    from robustness.privacy.references import ReferenceRecipe

    with pytest.raises(ConfigError, match="training the reference models: method 'trades'") as exc:
        privacy_audit(
            digits_model,
            "builtin:digits:train",
            "builtin:digits",
            ["lira"],
            recipe=ReferenceRecipe(method="trades"),
        )
    assert exc.value.field == "reference.eps" and "--reference-param" in exc.value.fix


def test_members_that_are_also_non_members_are_refused(digits_model):
    from robustness.privacy.audit import privacy_audit

    with pytest.raises(ConfigError, match="359 samples are both members and non-members") as exc:
        privacy_audit(digits_model, "builtin:digits", "builtin:digits:all", ["loss"])
    assert exc.value.field == "non_members"


def test_cli_bad_input_exits_2(capsys):
    code = main(
        ["privacy", "--model", "zoo:digits-cnn", "--device", "cpu", "--members", "builtin:nope",
         "--non-members", "builtin:digits", "--attack", "loss"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--members" in err
