"""The ``robustness`` command line: info commands, ``evaluate``, and one-paragraph errors with exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from robustness import __version__
from robustness.cli import main

DIGITS = ["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "cpu"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_paragraph_error(err: str, command: str, *needles: str) -> None:
    assert err.startswith(f"robustness {command}: error: ")
    assert err.count("\n") == 1 and err.endswith("\n")  # one paragraph
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


# ---------------------------------------------------------------------------------------
# info commands


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("evaluate", "env", "models", "attacks"):
        assert command in out


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "usage: robustness" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"robustness-audit {__version__}"


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", "zoo:digits-cnn"])  # --data missing
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: --data" in err and "--help" in err


def test_env(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTNESS_CACHE", str(tmp_path))
    code, out, _ = run_cli(capsys, "env", "--json")
    assert code == 0
    env = json.loads(out)
    assert env["robustness_audit"] == __version__
    assert env["torch"] == torch.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["art"]  # ART is a dependency: its version is reported
    assert env["devices"][0] == "cpu" and env["cuda_available"] == torch.cuda.is_available()
    assert env["cache_dir"] == str(tmp_path)
    code, out, _ = run_cli(capsys, "env")
    assert code == 0 and "cache_dir" in out and str(tmp_path) in out and "torch" in out


def test_models(capsys, digits_model):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = {r["spec"]: r for r in json.loads(out)}
    assert code == 0 and rows["zoo:digits-cnn"]["cached"] is True
    assert rows["zoo:digits-cnn"]["data"] == "builtin:digits"
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "zoo:digits-cnn" in out


def test_attacks(capsys):
    code, out, _ = run_cli(capsys, "attacks", "--json")
    names = {r["name"] for r in json.loads(out)}
    assert code == 0 and {"pgd", "fgsm"} <= names
    code, out, _ = run_cli(capsys, "attacks")
    assert code == 0 and "pgd" in out and "art:ClassName" in out


# ---------------------------------------------------------------------------------------
# evaluate


def test_evaluate_json(capsys, digits_model, digits_test):
    code, out, err = run_cli(capsys, "evaluate", *DIGITS, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert {"n", "accuracy", "accuracy_ci", "precision", "recall", "f1", "confusion"} <= set(res)
    assert res["n"] == 359 and res["accuracy"] >= 0.97
    lo, hi = res["accuracy_ci"]
    assert lo < res["accuracy"] < hi and hi - lo < 0.05
    assert np.array(res["confusion"]).shape == (10, 10) and np.array(res["confusion"]).sum() == 359
    assert np.trace(np.array(res["confusion"])) == res["correct"] == round(res["accuracy"] * 359)
    # the CLI agrees with the library
    pred = digits_model.predict(digits_test.x)
    assert res["correct"] == int((pred == digits_test.y).sum())
    assert 0.97 <= res["f1"] <= 1 and 0.97 <= res["precision"] <= 1 and 0.97 <= res["recall"] <= 1


def test_evaluate_text_and_subset(capsys, digits_model):
    code, out, _ = run_cli(capsys, "evaluate", *DIGITS, "--n-examples", "50", "--seed", "3")
    assert code == 0
    assert "(n=50)" in out and "95% CI" in out and "accuracy" in out
    code, out, _ = run_cli(capsys, "evaluate", *DIGITS, "--n-examples", "50", "--seed", "3", "--json")
    assert json.loads(out)["n"] == 50


# ---------------------------------------------------------------------------------------
# bad inputs: exit 2, one paragraph naming the problem


def _bad_npz(tmp_path, kind):
    rng = np.random.default_rng(0)
    x = rng.random((20, 1, 8, 8), dtype=np.float32)
    y = np.arange(20) % 10
    if kind == "labels":
        y[4] = 12
    elif kind == "nan":
        x[7, 0, 2, 2] = np.nan
    elif kind == "range":
        x = x * 16
    path = tmp_path / f"{kind}.npz"
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.mark.parametrize(
    "kind, needles",
    [
        ("labels", ["model: the model has 10 outputs but the labels go up to 12"]),
        ("nan", ["data.x: 1 inputs contain NaN or inf (first: sample 7)"]),
        ("range", ["outside the model's bounds [0, 1]", "divide by 255"]),
    ],
)
def test_evaluate_malformed_npz(capsys, tmp_path, digits_model, kind, needles):
    code, out, err = run_cli(
        capsys, "evaluate", "--model", "zoo:digits-cnn", "--data", _bad_npz(tmp_path, kind)
    )
    assert code == 2 and out == ""
    assert_one_paragraph_error(err, "evaluate", *needles)


def test_evaluate_corrupt_npz(capsys, tmp_path, digits_model):
    path = tmp_path / "c.npz"
    path.write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "evaluate", "--model", "zoo:digits-cnn", "--data", str(path))
    assert code == 2
    assert_one_paragraph_error(err, "evaluate", "cannot read", "c.npz", "numpy.savez")


TINY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Flat(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            return self.fc(x.flatten(1))

    def three_classes():
        return Flat(3)

    def wrong_input():
        return nn.Linear(10, 10)
    """
)


@pytest.fixture
def tiny_cli(tmp_path, monkeypatch):
    (tmp_path / "rb_cli_models.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_cli_models", raising=False)
    import rb_cli_models

    yield rb_cli_models
    sys.modules.pop("rb_cli_models", None)


def test_pickled_module_needs_trust_model(capsys, tmp_path, tiny_cli, digits_test):
    torch.manual_seed(0)
    net = tiny_cli.Flat()
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    argv = ["evaluate", "--model", str(path), "--data", "builtin:digits", "--device", "cpu", "--json"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_paragraph_error(err, "evaluate", "whole.pt", "arbitrary code", "--trust-model", "TorchScript")
    code, out, err = run_cli(capsys, *argv, "--trust-model")
    assert code == 0, err
    res = json.loads(out)
    expected = int((net(digits_test.x).argmax(1) == digits_test.y).sum())
    assert res["n"] == 359 and res["correct"] == expected


def test_labels_checked_against_the_models_classes(capsys, tiny_cli):
    # the factory's class count is only known after a forward pass; labels 3..9 do not fit it
    code, _, err = run_cli(
        capsys, "evaluate", "--model", "rb_cli_models:three_classes", "--data", "builtin:digits"
    )
    assert code == 2
    assert_one_paragraph_error(err, "evaluate", "model: the model has 3 outputs but the labels go up to 9")


def test_model_that_does_not_fit_the_data(capsys, tiny_cli):
    code, _, err = run_cli(
        capsys, "evaluate", "--model", "rb_cli_models:wrong_input", "--data", "builtin:digits"
    )
    assert code == 2
    assert_one_paragraph_error(err, "evaluate", "the model failed on inputs of shape (1, 8, 8)")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--model", "zoo:nope", "--data", "builtin:digits"], ["unknown zoo model 'nope'", "zoo:digits-cnn"]),
        (["--model", "missing.pt", "--data", "builtin:digits"], ["model: file not found: missing.pt"]),
        (["--model", "zoo:digits-cnn", "--data", "builtin:mnist"], ["unknown built-in data 'builtin:mnist'"]),
        (["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "tpu"], ["device: ", "'tpu'"]),
        (
            ["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--n-examples", "0"],
            ["n_examples: ", "got 0"],
        ),
        (
            ["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--batch-size", "0"],
            ["--batch-size must be > 0"],
        ),
        (
            ["--model", "zoo:digits-cnn", "--data", "builtin:digits", "--mean", "0.5"],
            ["mean and std must be given together"],
        ),
    ],
)
def test_evaluate_bad_inputs(capsys, digits_model, argv, needles):
    code, out, err = run_cli(capsys, "evaluate", *argv)
    assert code == 2 and out == ""
    assert_one_paragraph_error(err, "evaluate", *needles)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_traceback(capsys, where):
    argv = ["evaluate", "--model", "zoo:nope", "--data", "builtin:digits"]
    argv = ["--debug", *argv] if where == "before" else [*argv, "--debug"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert "Traceback (most recent call last)" in err and "ModelError" in err
    assert (
        err.rstrip()
        .splitlines()[-1]
        .startswith("robustness evaluate: error: model: unknown zoo model 'nope'")
    )


def test_console_script_smoke(digits_model, tmp_path):
    """The installed ``robustness`` entry point runs the main job end to end in a fresh process."""
    exe = shutil.which("robustness")
    assert exe, "the console script is not installed (pip install -e .)"
    env = {**os.environ, "ROBUSTNESS_CACHE": os.environ["ROBUSTNESS_CACHE"]}
    proc = subprocess.run(
        [exe, "evaluate", *DIGITS, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["n"] == 359 and res["accuracy"] >= 0.97
    bad = _bad_npz(tmp_path, "nan")
    proc = subprocess.run(
        [exe, "evaluate", "--model", "zoo:digits-cnn", "--data", bad],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "NaN or inf" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.gpu
def test_evaluate_on_cuda(capsys, digits_model, digits_test):
    code, out, err = run_cli(
        capsys,
        "evaluate",
        "--model",
        "zoo:digits-cnn",
        "--data",
        "builtin:digits",
        "--device",
        "cuda",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["correct"] == int((digits_model.predict(digits_test.x) == digits_test.y).sum())


def _evaluate_with_broken_loader(capsys, monkeypatch, fail, *extra: str) -> tuple[int, str]:
    import robustness.core.model

    monkeypatch.setattr(robustness.core.model, "load_model", lambda *a, **k: fail())
    code, _, err = run_cli(
        capsys, "evaluate", "--model", "zoo:digits-cnn", "--data", "builtin:digits", *extra
    )
    return code, err


def test_unexpected_errors_exit_2_in_one_paragraph_never_1(capsys, monkeypatch):
    """A crash must not read as 'a gate failed' (exit 1) in CI, nor print a raw traceback."""
    from robustness.core.metrics import clopper_pearson

    # A bug of ours: the innermost frame outside libraries is in this project's packages.
    code, err = _evaluate_with_broken_loader(capsys, monkeypatch, lambda: clopper_pearson(5, 3))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("robustness evaluate: internal error: ValueError: k=5 must be within [0, n=3]. ")
    assert "bug in robustness-audit" in err and "--debug" in err
    code, err = _evaluate_with_broken_loader(capsys, monkeypatch, lambda: clopper_pearson(5, 3), "--debug")
    assert code == 2 and "Traceback" in err

    def oom():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    code, err = _evaluate_with_broken_loader(capsys, monkeypatch, oom)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("robustness evaluate: error: RuntimeError: CUDA out of memory.")
    assert "lower the batch size (--batch-size" in err


def test_an_error_in_the_users_model_code_is_located_there(capsys, tmp_path, monkeypatch):
    (tmp_path / "picky_model.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Picky(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.w = nn.Parameter(torch.randn(64, 10, generator=torch.Generator().manual_seed(0)))

                def forward(self, x):
                    if x.requires_grad:
                        raise RuntimeError("no input gradients here")
                    return x.flatten(1) @ self.w

            def make():
                return Picky()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(
        capsys,
        *("attack", "--model", "picky_model:make", "--data", "builtin:digits"),
        *("--attack", "pgd", "--eps", "0.1", "--n-examples", "50"),
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("robustness attack: error: RuntimeError: no input gradients here")
    assert f"(raised in {tmp_path / 'picky_model.py'}:12, your model's or data's own code)" in err


# ---------------------------------------------------------------------------------------
# the error type the CLI renders


def test_error_rendering_and_pickling():
    import pickle

    from robustness.core.errors import ConfigError, DataError, RobustnessError

    e = DataError("labels span 0..12", field="data.y", fix="Give class indices.")
    assert str(e) == "data.y: labels span 0..12. Give class indices."
    assert isinstance(e, RobustnessError) and e.exit_code == 2
    assert str(ConfigError("bad key?")) == "bad key?"
    back = pickle.loads(pickle.dumps(e))  # errors cross process boundaries intact
    assert type(back) is DataError and (back.message, back.field, back.fix) == (e.message, e.field, e.fix)
    assert str(back) == str(e)
