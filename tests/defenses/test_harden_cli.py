"""``robustness harden``: bad inputs exit 2 with a clear message; a run writes a loadable folder."""

from __future__ import annotations

import json

import pytest

from robustness.cli import main

BASE = ["harden", "--model", "zoo:digits-cnn", "--data", "builtin:digits:train", "--device", "cpu"]


def run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--method", "adversarial"], "unknown training method 'adversarial'"),
        (["--method", "pgd-at", "--eps", "0"], "eps must be a finite number > 0"),
        (["--method", "pgd-at", "--eps", "-0.1"], "eps must be a finite number > 0"),
        (["--method", "pgd-at"], "needs eps"),
        (["--method", "distillation", "--temperature", "0"], "temperature must be a finite number > 0"),
        (["--method", "distillation", "--temperature", "-3"], "temperature must be a finite number > 0"),
        (["--method", "standard", "--temperature", "10"], "temperature does not apply"),
        (["--method", "standard", "--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["--method", "standard", "--amp", "bf16"], "needs a CUDA device"),
        (["--method", "fast-at", "--eps", "0.2", "--val-fraction", "0"], "needs a validation split"),
    ],
)
def test_bad_inputs_exit_2(extra, needle, capsys, tmp_path):
    code, text = run([*BASE, *extra, "--epochs", "1", "--output", str(tmp_path / "o")], capsys)
    assert code == 2, text
    assert needle in text
    assert "Traceback" not in text


def test_unknown_method_lists_the_known_ones(capsys, tmp_path):
    _, text = run([*BASE, "--method", "nope", "--output", str(tmp_path)], capsys)
    for m in ("standard", "pgd-at", "trades", "fast-at", "distillation"):
        assert m in text


def test_output_folder_rules(capsys, tmp_path):
    out = str(tmp_path / "run")
    args = [*BASE, "--n-examples", "200", "--epochs", "1", "--quiet", "--output", out]
    code, text = run(args, capsys)
    assert code == 0, text
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["training"]["init"] == "scratch" and card["training"]["model_spec"] == "zoo:digits-cnn"
    # The same run again without --resume: refused, and told about --resume.
    code, text = run(args, capsys)
    assert code == 2 and "--resume" in text
    # A different run into the same folder, even with --resume: refused.
    code, text = run([*args[:-2], "--epochs", "2", "--output", out, "--resume"], capsys)
    assert code == 2 and "different run" in text and "config.epochs" in text
    # --resume of the completed run rewrites the artifacts and succeeds.
    code, text = run([*args, "--resume"], capsys)
    assert code == 0, text
    # A non-empty folder that holds no run is refused.
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    code, text = run([*args[:-1], str(junk)], capsys)
    assert code == 2 and "not empty" in text


def test_fine_tune_from_a_harden_folder(capsys, tmp_path):
    first = str(tmp_path / "a")
    code, text = run([*BASE, "--n-examples", "200", "--epochs", "1", "--quiet", "--output", first], capsys)
    assert code == 0, text
    code, text = run(
        [
            "harden",
            "--model",
            first,
            "--data",
            "builtin:digits:train",
            "--n-examples",
            "200",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--quiet",
            "--json",
            "--output",
            str(tmp_path / "b"),
        ],
        capsys,
    )
    assert code == 0, text
    card = json.loads((tmp_path / "b" / "model.json").read_text())
    assert card["training"]["init"] == "weights" and card["training"]["weights_from"] == first
    assert card["architecture"] == {"factory": "zoo:digits-cnn"}


def test_not_rebuildable_model_is_refused(capsys, tmp_path):
    f = tmp_path / "m.pt2"
    f.write_bytes(b"x")
    code, text = run(
        ["harden", "--model", str(f), "--data", "builtin:digits:train", "--output", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and "architecture it can rebuild" in text


@pytest.mark.parametrize("init", ["scratch", "weights"])
def test_untrusted_folder_factory_runs_nothing(init, capsys, tmp_path):
    # A folder's model.json is data from whoever sent it: harden must not call its factory
    # (from scratch or to load its weights) without --trust-model.
    import sys

    marker = tmp_path / "ran"
    folder = tmp_path / "evil"
    folder.mkdir()
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    card = {"architecture": {"factory": "subprocess:run", "kwargs": {"args": command}}, "num_classes": 10}
    (folder / "model.json").write_text(json.dumps(card))
    args = ["harden", "--model", str(folder), "--init", init, "--data", "builtin:digits:train"]
    code, text = run(
        [*args, "--method", "standard", "--epochs", "1", "--output", str(tmp_path / "o")], capsys
    )
    assert code == 2, text
    assert "'subprocess:run'" in text and "--trust-model" in text
    assert not marker.exists()
