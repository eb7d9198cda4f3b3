"""``robustness attack``: JSON and table output, saved examples, and every user mistake exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustness.cli import main

BASE = ["attack", "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--device", "cpu"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([*BASE, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_one_eps_is_an_object(capsys):
    code, out, _ = run(
        capsys, "--attack", "pgd", "--eps", "0.1", "--n-examples", "40", "--steps", "7", "--json"
    )
    assert code == 0
    row = json.loads(out)
    assert isinstance(row, dict)
    for key in (
        "attack",
        "norm",
        "eps",
        "n",
        "clean_accuracy",
        "robust_accuracy",
        "robust_accuracy_ci",
        "time_s",
        "n_forward",
        "n_backward",
        "n_queries",
    ):
        assert key in row
    assert row["attack"] == "pgd" and row["norm"] == "linf" and row["eps"] == 0.1 and row["n"] == 40
    assert row["params"]["steps"] == 7
    lo, hi = row["robust_accuracy_ci"]
    assert 0 <= lo <= row["robust_accuracy"] <= hi <= 1
    assert row["robust_accuracy"] <= row["clean_accuracy"]
    assert row["n_backward"] > 0 and row["n_queries"] == 0
    assert (row["precision"], row["channels_last"], row["compiled"]) == ("fp32", False, False)


def test_precision_and_layout_are_recorded(capsys):
    code, out, _ = run(
        capsys,
        *("--attack", "pgd", "--eps", "0.1", "--n-examples", "40", "--steps", "7"),
        *("--precision", "bf16", "--channels-last", "--json"),
    )
    assert code == 0
    row = json.loads(out)
    assert (row["precision"], row["channels_last"]) == ("bf16", True)
    code, out, _ = run(capsys, "--attack", "pgd", "--eps", "0.1", "--n-examples", "20", "--precision", "bf16")
    assert code == 0 and "device cpu, bf16," in out


def test_json_several_eps_is_a_list_and_autoattack_fast_is_monotone(capsys):
    code, out, _ = run(
        capsys, "--attack", "autoattack-fast", "--eps", "0.05", "0.1", "0.2", "--n-examples", "30", "--json"
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["eps"] for r in rows] == [0.05, 0.1, 0.2]
    accs = [r["robust_accuracy"] for r in rows]
    assert accs[0] >= accs[1] >= accs[2] and accs[0] > accs[2]


def test_table_output(capsys):
    code, out, _ = run(capsys, "--attack", "fgsm", "--eps", "0.05", "0.2", "--n-examples", "20")
    assert code == 0
    assert "robust acc" in out and "clean accuracy" in out
    assert out.count("\n") >= 5


def test_save_npz(capsys, tmp_path, digits_model):
    path = tmp_path / "adv.npz"
    code, out, _ = run(
        capsys, "--attack", "pgd", "--eps", "0.05", "0.1", "--n-examples", "25", "--save", str(path), "--json"
    )
    assert code == 0
    rows = json.loads(out)
    with np.load(path) as z:  # no pickle needed
        assert list(z["eps"]) == [0.05, 0.1]
        x_adv, y, ids, adv_pred = z["x_adv"], z["y"], z["ids"], z["adv_pred"]
        assert x_adv.shape == (2, 25, 1, 8, 8) and y.shape == (25,) and adv_pred.shape == (2, 25)
        assert len(set(ids.tolist())) == 25
    for i in range(2):
        pred = digits_model.predict(torch.from_numpy(x_adv[i])).numpy()
        assert np.array_equal(pred, adv_pred[i])
        assert float((pred == y).mean()) == pytest.approx(rows[i]["robust_accuracy"])
        assert x_adv[i].min() >= 0 and x_adv[i].max() <= 1
    # The perturbation is measured against the clean inputs of the same ids.
    from robustness.core.data import load_data

    clean = load_data("builtin:digits", n_examples=25, seed=0)
    assert clean.ids == ids.tolist()
    delta = np.abs(x_adv - clean.x.numpy()[None]).reshape(2, 25, -1).max(axis=2)
    assert delta[0].max() <= 0.05 + 1e-6 and delta[1].max() <= 0.1 + 1e-6
    assert not list(tmp_path.glob(".adv.npz.*"))  # no temporary file left behind


def test_targeted_and_params(capsys):
    code, out, _ = run(
        capsys,
        "--attack",
        "pgd",
        "--eps",
        "0.3",
        "--n-examples",
        "20",
        "--targeted",
        "least-likely",
        "--param",
        "loss=margin",
        "--restarts",
        "2",
        "--json",
    )
    assert code == 0
    row = json.loads(out)
    assert row["targeted"] == "least-likely"
    assert row["params"]["loss"] == "margin" and row["params"]["restarts"] == 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--attack", "pgdd", "--eps", "0.1"], "Known: "),
        (["--attack", "square", "--eps", "0.1", "--norm", "l1"], "norm"),
        (["--attack", "pgd", "--eps", "0.1", "--norm", "l3"], "l3"),
        (["--attack", "pgd", "--eps", "0"], "eps"),
        (["--attack", "pgd", "--eps", "0.1", "-0.1"], "eps"),
        (["--attack", "pgd", "--eps", "2"], "eps"),
        (["--attack", "deepfool", "--eps", "0.1", "--targeted", "random"], "targeted"),
        (["--attack", "pgd", "--eps", "0.1", "--param", "stepz=3"], "stepz"),
        (["--attack", "pgd", "--eps", "0.1", "--param", "steps"], "KEY=VALUE"),
        (["--attack", "pgd", "--eps", "0.1", "--param", "steps=0"], "steps"),
        (["--attack", "square", "--eps", "0.1", "--steps", "10"], "n_queries"),
        (["--attack", "noise", "--eps", "0.1", "--restarts", "2"], "restarts"),
        (["--attack", "pgd", "--eps", "0.1", "--steps", "5", "--param", "steps=6"], "twice"),
        (["--attack", "pgd", "--eps", "0.1", "--batch-size", "0"], "batch-size"),
        (["--attack", "pgd", "--eps", "0.1", "--save", "adv.txt"], ".npz"),
    ],
)
def test_user_mistakes_exit_2_with_a_clear_message(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2, (out, err)
    assert needle in err
    assert err.count("\n") == 1  # one paragraph, no traceback
    assert "Traceback" not in err


def test_unknown_attack_lists_every_registered_one(capsys):
    from attacks.registry import available

    _, _, err = run(capsys, "--attack", "nope", "--eps", "0.1")
    for name in available():
        assert name in err


def test_steps_error_names_the_attacks_parameters(capsys):
    _, _, err = run(capsys, "--attack", "square", "--eps", "0.1", "--steps", "10")
    assert "square" in err and "n_queries" in err and "p_init" in err


def test_missing_eps_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main([*BASE, "--attack", "pgd"])
    assert exc.value.code == 2
