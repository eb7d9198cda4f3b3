"""`robustness report` (and every reader of results.json) refuses numbers no audit can produce."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reports.results import ResultsError, load_results, validate_results
from robustness.cli import main
from robustness.core.verdict import VERDICTS

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def fixture_results() -> dict:
    return json.loads((DATA / "results.json").read_text())


@pytest.fixture
def results(fixture_results) -> dict:
    return copy.deepcopy(fixture_results)


def set_path(res: dict, path: str, value) -> None:
    """Set 'robust[2].ci[0]'-style paths."""
    import re

    target = res
    keys = re.findall(r"[^.\[\]]+", path)
    for i, k in enumerate(keys):
        key = k if isinstance(target, dict) else int(k)  # "per_class_accuracy.9" is a string key
        if i == len(keys) - 1:
            target[key] = value
        else:
            target = target[key]


def test_the_fixture_and_an_audits_own_numbers_are_accepted(fixture_results):
    validate_results(fixture_results)
    assert load_results(DATA).verdict == "fail"
    assert VERDICTS == ("pass", "fail", "unreliable")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("robust[2].accuracy", 1.5, "not in [0, 1]"),
        ("robust[0].accuracy", -0.1, "not in [0, 1]"),
        ("clean.accuracy", float("nan"), "not in [0, 1]"),
        ("clean.precision", 2.0, "not in [0, 1]"),
        ("robust[1].per_attack.pgd", 1.01, "not in [0, 1]"),
        ("robust[1].per_class_accuracy.9", -1, "not in [0, 1]"),
        ("robust[0].accuracy", "0.9", "not a number"),
        ("robust[0].accuracy", True, "not a number"),
        # intervals
        ("robust[1].ci", [0.6, 0.7], "does not contain its estimate 0.515"),
        ("robust[1].ci", [0.58, 0.44], "low > high"),
        ("clean.ci", [0.9, 1.2], "not in [0, 1]"),
        ("robust[0].ci", [0.9], "not an interval"),
        # counts
        ("robust[0].n", -200, "not a non-negative integer"),
        ("robust[0].n", 200.5, "not a non-negative integer"),
        ("clean.n", True, "not a non-negative integer"),
        ("data.n", "200", "not a non-negative integer"),
        ("robust[0].n_robust", 250, "larger than n"),
        ("robust[0].per_attack_cost.pgd.n_queries", -5, "not a non-negative integer"),
        ("robust[0].per_attack_cost.pgd.time_s", -1.0, "negative"),
        # the numbers must agree with each other
        ("robust[0].accuracy", 0.5, "not n_robust/n = 185/200"),
        # verdicts and statuses
        ("verdict", "passed", "not one of pass, fail, unreliable"),
        ("verdict", "pass", "contradicts the gates and checks"),
        ("sanity_checks[1].status", "ok", "not one of pass, fail, skip, waived"),
        ("gates[0].passed", "yes", "not true or false"),
        ("gates[1].value", float("inf"), "not a finite number"),
    ],
)
def test_impossible_values_are_refused_naming_the_field(results, path, value, message):
    set_path(results, path, value)
    with pytest.raises(ResultsError) as exc:
        validate_results(results, "run/results.json")
    err = exc.value
    assert message in err.message, err.message
    assert err.field.startswith(path.split("[")[0]), (err.field, path)
    assert "run/results.json" in err.message and err.fix


def test_the_field_path_is_exact(results):
    set_path(results, "robust[2].accuracy", 1.5)
    with pytest.raises(ResultsError) as exc:
        validate_results(results)
    assert exc.value.field == "robust[2].accuracy"
    set_path(results, "robust[2].accuracy", 0.02)
    set_path(results, "robust[1].ci", [0.6, 0.7])
    with pytest.raises(ResultsError) as exc:
        validate_results(results)
    assert exc.value.field == "robust[1].ci"


def test_robust_accuracy_cannot_rise_with_eps_or_exceed_clean(results):
    # Consistent counts, but more robust samples at a larger eps: impossible (broken stays broken).
    r = results["robust"][2]
    r.update(n_robust=190, accuracy=0.95, ci=[0.9, 0.98])
    with pytest.raises(ResultsError, match="rises from 0.515 at eps 0.1 to 0.95 at eps 0.2") as exc:
        validate_results(results)
    assert exc.value.field == "robust[2].accuracy"
    results["clean"].update(correct=180, accuracy=0.9, ci=[0.85, 0.94])
    results["robust"][2].update(n_robust=4, accuracy=0.02, ci=[0.005, 0.05])
    with pytest.raises(ResultsError, match="exceeds clean accuracy") as exc:
        validate_results(results)
    assert exc.value.field == "robust[0].accuracy"


def test_a_verdict_that_contradicts_its_gates_is_refused(results):
    # A failed gate with a 'pass' verdict: a report would print PASS over a failed gate.
    results["verdict"] = "pass"
    with pytest.raises(ResultsError, match="which give 'fail'"):
        validate_results(results)
    results["verdict"] = "unreliable"
    with pytest.raises(ResultsError, match="which give 'fail'"):
        validate_results(results)
    results["sanity_checks"][0]["status"] = "fail"
    validate_results(results)  # a failed check: unreliable is right


def test_optional_sections_may_be_missing(results):
    for key in ("watermark", "attacks", "config", "environment", "timing", "files"):
        results.pop(key, None)
    for r in results["robust"]:
        for key in ("per_class_accuracy", "per_attack_cost", "per_attack", "time_s", "ci"):
            r.pop(key)
    results["clean"]["per_class_accuracy"]["7"] = None  # a class absent from the data
    validate_results(results)


def test_watermark_numbers_are_checked(results):
    results["watermark"] = {"k": 120, "K": 100, "p_value": 0.01, "alpha": 1e-6, "verified": False}
    with pytest.raises(ResultsError, match="120 trigger matches out of 100") as exc:
        validate_results(results)
    assert exc.value.field == "watermark.k"
    results["watermark"].update(k=12, p_value=1.5)
    with pytest.raises(ResultsError) as exc:
        validate_results(results)
    assert exc.value.field == "watermark.p_value"


def test_cli_report_exits_2_with_one_paragraph_naming_the_field(tmp_path, results, capsys):
    results["robust"][2]["accuracy"] = 1.5
    p = tmp_path / "results.json"
    p.write_text(json.dumps(results))
    for fmt in ("pdf", "md", "junit"):
        assert main(["report", str(p), "--format", fmt, "-o", str(tmp_path / f"out.{fmt}")]) == 2
        err = capsys.readouterr().err
        assert "robust[2].accuracy" in err and "1.5 is not in [0, 1]" in err and str(p) in err
        assert "Traceback" not in err
        assert not (tmp_path / f"out.{fmt}").exists()
    # NaN is valid JSON to Python's reader; it is no accuracy either.
    results["robust"][2]["accuracy"] = float("nan")
    p.write_text(json.dumps(results))
    assert main(["report", str(p), "--format", "md", "-o", str(tmp_path / "x.md")]) == 2
    assert "robust[2].accuracy" in capsys.readouterr().err
