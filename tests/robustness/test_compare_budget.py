"""compare and the baseline gate: different attack budgets are a warning, or with a flag a refusal;
impossible numbers in either results file are refused."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from attacks.registry import get_attack
from robustness.cli import main
from robustness.compare import BudgetWarning, budget_differences, budget_of, compare
from robustness.config import PRESET_ATTACKS, parse_config
from robustness.core.errors import ConfigError, RobustnessError, UsageError
from robustness.gates import check_baseline, evaluate_gates

FIXTURE = Path(__file__).resolve().parents[1] / "reports" / "data"


def copy_run(folder: Path, *, preset: str | None = None, edit=None) -> Path:
    """The fixture audit (results.json + samples.jsonl) in ``folder``; ``preset`` rewrites its
    recorded attacks as that preset's, resolved as the runner records them."""
    folder.mkdir(parents=True)
    shutil.copy(FIXTURE / "samples.jsonl", folder / "samples.jsonl")
    res = json.loads((FIXTURE / "results.json").read_text())
    if preset is not None:
        res["config"]["attacks"] = preset
        res["attacks"] = [
            {"name": a["name"], "attack": a["name"], "params": get_attack(a["name"], **a["params"]).params}
            for a in PRESET_ATTACKS[preset]
            if not a["name"].startswith("art:")
        ]
    if edit is not None:
        edit(res)
    (folder / "results.json").write_text(json.dumps(res))
    return folder / "results.json"


def test_budget_differences_name_preset_attacks_and_parameters():
    quick = budget_of(
        [{"attack": "apgd-ce", "params": {"steps": 50}}, {"name": "square", "params": {}}], "quick"
    )
    standard = budget_of(
        [
            {"attack": "apgd-ce", "params": {"steps": 100}},
            {"attack": "fab", "params": {}},
            {"name": "square"},
        ],
        "standard",
    )
    assert budget_differences(quick, standard) == [
        "BASE ran the 'quick' preset, NEW the 'standard' preset",
        "apgd-ce steps 50 vs 100 (BASE vs NEW)",
        "fab ran only in NEW",
    ]
    assert budget_differences(quick, quick) == []
    assert budget_differences(None, quick) is None  # unrecorded: not known to be the same
    # Two runs of one attack line up by order, whatever labels the runner gave them.
    a = budget_of(
        [
            {"name": "pgd", "params": {"steps": 10}},
            {"name": "pgd-2", "attack": "pgd", "params": {"steps": 40}},
        ]
    )
    b = budget_of(
        [
            {"name": "pgd", "params": {"steps": 10}},
            {"name": "pgd (2)", "attack": "pgd", "params": {"steps": 80}},
        ]
    )
    assert budget_differences(a, b) == ["pgd #2 steps 40 vs 80 (BASE vs NEW)"]
    # Tuples and lists (what the runner writes) compare equal.
    assert (
        budget_differences(
            budget_of([{"name": "x", "params": {"c": (1, 2)}}]),
            budget_of([{"name": "x", "params": {"c": [1, 2]}}]),
        )
        == []
    )


def test_same_budget_no_warning(tmp_path, capsys):
    base, new = copy_run(tmp_path / "a"), copy_run(tmp_path / "b")
    assert compare(base, new).budget_differences == []
    assert main(["compare", str(base), str(new), "--strict-budget"]) == 0
    assert "warning:" not in capsys.readouterr().out


def test_quick_against_standard_warns_and_strict_refuses(tmp_path, capsys):
    base = copy_run(tmp_path / "quick", preset="quick")
    new = copy_run(tmp_path / "standard", preset="standard")
    cmp = compare(base, new)
    diffs = cmp.budget_differences
    assert diffs[0] == "BASE ran the 'quick' preset, NEW the 'standard' preset"
    assert "apgd-ce steps 50 vs 100 (BASE vs NEW)" in diffs
    assert "fab ran only in NEW" in diffs
    assert any(d.startswith("square n_queries 1000 vs 5000") for d in diffs)
    # Text output: the warning, and the numbers (the comparison still runs; exit by the test).
    assert main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert "warning: the audits ran different attack budgets (BASE ran the 'quick' preset" in out
    assert "result: no significant regression" in out
    # JSON output: the differences in the object, the warning on stderr.
    assert main(["compare", str(base), str(new), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["budget_differences"] == diffs
    assert "robustness compare: warning: the audits ran different attack budgets" in captured.err
    # --strict-budget: exit 2, one paragraph naming the flag and the differences.
    assert main(["compare", str(base), str(new), "--strict-budget"]) == 2
    err = capsys.readouterr().err
    assert "--strict-budget" in err and "'quick' preset" in err and "fab ran only in NEW" in err
    assert "Traceback" not in err
    with pytest.raises(UsageError) as exc:
        compare(base, new, strict_budget=True)
    assert exc.value.field == "--strict-budget"


def test_changed_parameters_of_an_explicit_attack_list(tmp_path):
    def more_steps(res):
        res["attacks"][1]["params"]["steps"] = 40
        res["config"]["attacks"][1]["params"]["steps"] = 40

    base, new = copy_run(tmp_path / "a"), copy_run(tmp_path / "b", edit=more_steps)
    assert compare(base, new).budget_differences == ["pgd steps 20 vs 40 (BASE vs NEW)"]
    with pytest.raises(UsageError, match="pgd steps 20 vs 40"):
        compare(base, new, strict_budget=True)


def test_results_without_an_attack_list(tmp_path):
    base = copy_run(tmp_path / "a")
    new = copy_run(tmp_path / "b", edit=lambda r: r.pop("attacks"))
    cmp = compare(base, new)
    assert cmp.budget_differences == []
    assert "the attack budgets cannot be compared: NEW lists no attacks" in cmp.notes
    with pytest.raises(UsageError, match="NEW lists no attacks"):
        compare(base, new, strict_budget=True)


def test_compare_refuses_impossible_numbers(tmp_path, capsys):
    base = copy_run(tmp_path / "a", edit=lambda r: r["robust"][1].update(ci=[0.6, 0.7]))
    new = copy_run(tmp_path / "b")
    assert main(["compare", str(base), str(new)]) == 2
    err = capsys.readouterr().err
    assert "robust[1].ci" in err and "does not contain its estimate" in err and "BASE" in err
    with pytest.raises(RobustnessError) as exc:
        compare(new, copy_run(tmp_path / "c", edit=lambda r: r["clean"].update(accuracy=1.2)))
    assert exc.value.field == "clean.accuracy" and "NEW" in exc.value.message


# -- the baseline gate --------------------------------------------------------------------


def gate_config(baseline: Path, attacks=None, **gates) -> object:
    fixture = json.loads((FIXTURE / "results.json").read_text())
    return parse_config(
        {
            "model": {"spec": "zoo:digits-cnn"},
            "data": {"spec": "builtin:digits"},
            "threat": {"eps": [0.05, 0.1, 0.2]},
            "attacks": attacks if attacks is not None else fixture["config"]["attacks"],
            "gates": {"max_drop": 0.02, "baseline": str(baseline), **gates},
        }
    )


def strict(cfg):
    """The config with gates.strict_budget on (the key is added to the config schema separately)."""
    return cfg.model_copy(update={"gates": cfg.gates.model_copy(update={"strict_budget": True})})


@pytest.fixture(scope="module")
def audit() -> dict:
    return json.loads((FIXTURE / "results.json").read_text())


def test_baseline_gate_same_budget_passes_quietly(tmp_path, audit):
    cfg = gate_config(copy_run(tmp_path / "base"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        gates = evaluate_gates(cfg, audit["clean"], audit["robust"])
        check_baseline(strict(cfg))
    drops = [g for g in gates if g["name"].startswith("max_drop@")]
    assert len(drops) == 3 and all(g["passed"] for g in drops)
    assert not any("attack budget" in g["detail"] for g in drops)


def test_baseline_gate_warns_on_another_budget_and_strict_refuses(tmp_path, audit):
    base = copy_run(tmp_path / "base", preset="quick")
    cfg = gate_config(base)
    with pytest.warns(
        BudgetWarning, match="apgd-ce ran only in the baseline; apgd-t ran only in the baseline"
    ):
        gates = evaluate_gates(cfg, audit["clean"], audit["robust"])
    drops = [g for g in gates if g["name"].startswith("max_drop@")]
    assert all("the baseline ran a different attack budget" in g["detail"] for g in drops)
    assert all(g["passed"] for g in drops)  # a warning, not a verdict
    with pytest.raises(ConfigError) as exc:
        check_baseline(strict(cfg))
    assert exc.value.field == "gates.baseline" and "fgsm ran only in this audit" in exc.value.message
    # The runner may pass the attacks it really ran (EOT-wrapped ones, say) instead of the config's.
    recorded = json.loads(base.read_text())["attacks"]
    assert check_baseline(strict(cfg), attacks=recorded)[1] == []


def test_baseline_gate_refuses_impossible_numbers(tmp_path, audit):
    bad = copy_run(tmp_path / "base", edit=lambda r: r["robust"][0].update(accuracy=0.95))
    with pytest.raises(ConfigError) as exc:
        evaluate_gates(gate_config(bad), audit["clean"], audit["robust"])
    err = exc.value
    assert err.field == "gates.baseline"
    assert "robust[0].accuracy" in err.message and "not n_robust/n = 185/200" in err.message
