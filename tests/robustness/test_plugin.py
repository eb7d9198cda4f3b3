"""The pytest plugin and robustness.testing.assert_robust."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from robustness.testing import assert_robust

pytest_plugins = ["pytester"]


def test_plugin_is_registered_and_its_import_is_light():
    eps = [e for e in entry_points(group="pytest11") if e.name == "robustness"]
    assert [e.value for e in eps] == ["robustness.pytest_plugin"]
    code = (
        "import sys, robustness.pytest_plugin, robustness.testing\n"
        "heavy = [m for m in ('torch', 'attacks', 'art', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_assert_robust_numbers_match_the_attack(digits_model, digits_small):
    """The message reports the attack's own numbers: re-run the same attack and compare."""
    from attacks.registry import get_attack
    from robustness.core.metrics import clopper_pearson

    ds = digits_small.subset(range(50))
    ref = get_attack("pgd", steps=5)(digits_model, ds.x, ds.y, eps=0.15, seed=0)
    k, n = int(ref.robust.sum()), ref.n
    clean_ok = int((ref.clean_pred == ref.y).sum())
    lo, hi = clopper_pearson(k, n)
    with pytest.raises(AssertionError) as info:
        assert_robust(digits_model, ds, attack="pgd", eps=0.15, min_accuracy=0.95, steps=5)
    msg = str(info.value)
    assert msg == (
        f"not robust enough under pgd at linf eps 0.15: robust accuracy {k / n:.1%} (95% CI [{lo:.1%}, {hi:.1%}]) "
        f"is below the required 95.0% (judged on the lower end of its 95% CI). {clean_ok - k} of {clean_ok} "
        f"correctly classified samples were broken ({n - clean_ok} of {n} were misclassified before any attack)."
    )
    # Passing with the point estimate but not with the interval's lower end: the default is conservative.
    thr = (lo + k / n) / 2
    with pytest.raises(AssertionError, match="judged on the lower end"):
        assert_robust(digits_model, ds, attack="pgd", eps=0.15, min_accuracy=thr, steps=5)
    out = assert_robust(digits_model, ds, attack="pgd", eps=0.15, min_accuracy=thr, steps=5, judge="point")
    assert out["passed"] and out["n_robust"] == k and out["robust_accuracy_ci"] == [lo, hi]
    # (x, y) tensors and n_examples work too.
    out = assert_robust(
        digits_model,
        (digits_small.x, digits_small.y),
        attack="fgsm",
        eps=0.01,
        min_accuracy=0.8,
        n_examples=40,
    )
    assert out["n"] == 40


def test_pytester_passing_and_failing_assert_robust(pytester, monkeypatch):
    monkeypatch.setenv("ROBUSTNESS_CACHE", __import__("os").environ["ROBUSTNESS_CACHE"])
    pytester.makepyfile(
        test_model="""
        import pytest
        from robustness.core.model import load_model
        from robustness.testing import assert_robust

        @pytest.fixture(scope="module")
        def model():
            return load_model("zoo:digits-cnn", device="cpu")

        @pytest.mark.robustness
        def test_small_eps(model):
            assert_robust(model, "builtin:digits", attack="fgsm", eps=0.01, min_accuracy=0.8, n_examples=60)

        @pytest.mark.robustness
        def test_large_eps(model):
            assert_robust(model, "builtin:digits", attack="pgd", eps=0.2, min_accuracy=0.9, n_examples=60, steps=10)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines(
        [
            r".*AssertionError: not robust enough under pgd at linf eps 0\.2: robust accuracy \d+\.\d% "
            r"\(95% CI \[\d+\.\d%, \d+\.\d%\]\) is below the required 90\.0% "
            r"\(judged on the lower end of its 95% CI\)\. \d+ of \d+ correctly classified samples were broken.*",
            r".*FAILED test_model\.py::test_large_eps.*",
        ]
    )
    # "N of M correctly classified samples were broken": real counts out of 60.
    text = result.stdout.str()
    assert "correctly classified samples were broken" in text and "of 60 were misclassified" in text


def test_robustness_audit_fixture_wiring(pytester):
    """The fixture calls robustness.audit.run_audit with the overrides and a temporary output folder."""
    pytester.makepyfile(
        test_audit="""
        import sys, types
        from pathlib import Path

        def test_fixture(robustness_audit, monkeypatch, tmp_path):
            calls = []
            def fake_run_audit(config, **overrides):
                calls.append((config, overrides))
                return {"verdict": "pass", "robust": []}
            monkeypatch.setitem(sys.modules, "robustness.audit", types.SimpleNamespace(run_audit=fake_run_audit))
            res = robustness_audit("examples/digits-audit.yaml", eps=[0.1], n_examples=20)
            assert res == {"verdict": "pass", "robust": []}
            config, overrides = calls[0]
            assert config == "examples/digits-audit.yaml"
            assert overrides["eps"] == [0.1] and overrides["n_examples"] == 20
            out = Path(overrides["output_dir"])
            assert out.name == "robustness-audit" and out.parent == tmp_path
            robustness_audit({"k": 1}, output_dir="elsewhere")
            assert calls[1][1]["output_dir"] == "elsewhere"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_robustness_audit_fixture_runs_a_real_audit(pytester, monkeypatch):
    pytest.importorskip("robustness.audit")
    monkeypatch.setenv("ROBUSTNESS_CACHE", __import__("os").environ["ROBUSTNESS_CACHE"])
    pytester.makepyfile(
        test_real="""
        def test_audit(robustness_audit, tmp_path):
            config = {
                "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
                "data": {"spec": "builtin:digits", "n_examples": 24},
                "threat": {"norm": "linf", "eps": [0.05]},
                "attacks": [{"name": "fgsm"}, {"name": "pgd", "params": {"steps": 5}}],
                "output": {"formats": ["json"]},
                # The checks run extra attacks (Square: minutes); they are the runner's tests' job.
                "sanity_checks": {"enabled": False, "reason": "plugin wiring test only"},
            }
            res = robustness_audit(config)
            assert res["schema_version"] == "1.1"
            assert res["data"]["n"] == 24
            assert 0.0 <= res["robust"][0]["accuracy"] <= res["clean"]["accuracy"]
            assert (tmp_path / "robustness-audit" / "results.json").is_file()
            # What the test got is the results.json on disk, read with the one loader.
            loaded = robustness_audit.load(tmp_path / "robustness-audit")
            assert loaded.to_dict() == res and loaded.gates == [] and loaded.verdict == res["verdict"]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_load_results_reads_a_0_1_0_results_file():
    from pathlib import Path

    from robustness.testing import load_results

    res = load_results(Path(__file__).resolve().parents[1] / "reports" / "data" / "results.json")
    assert res.file_schema_version == "1.0" and res.schema_version == "1.1"
    assert [g.eps for g in res.gates] == [None, 0.05, 0.1, 0.2]
    assert res.robust[0].accuracy == 0.925
