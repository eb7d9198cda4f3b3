"""Attack parameters are type-checked by one rule in Python, ``--param`` and configs, and
the ``attack`` command names a bad ``--seed``, ``--param`` or ``--save`` before anything runs."""

from __future__ import annotations

import os

import numpy as np
import pytest

from attacks.base import param_type_problem
from attacks.registry import available, get_attack
from robustness.cli import main
from robustness.config import check_config, parse_config
from robustness.core.errors import AttackError, ConfigError

# A model spec that cannot load: an error about it would mean a check came too late.
NO_MODEL = ["attack", "--model", "missing-model.pt2", "--data", "builtin:digits", "--device", "cpu"]

BAD = [
    ("pgd", "steps", 2.5, "2.5", "must be an integer, got 2.5"),
    ("pgd", "steps", True, "true", "must be an integer, got True (a boolean)"),
    ("pgd", "steps", 3.0, "3.0", "must be an integer, got 3.0"),
    ("pgd", "steps", "abc", "abc", "must be an integer, got 'abc' (a string)"),
    ("square", "n_queries", 1.5, "1.5", "must be an integer, got 1.5"),
    ("apgd-ce", "rho", float("nan"), "NaN", "must be a finite number, got nan"),
    ("fab", "eta", "big", "big", "must be a finite number, got 'big' (a string)"),
    ("pgd", "random_start", 0, "0", "must be true or false, got 0"),
]


@pytest.mark.parametrize("name, key, value, text, expected", BAD)
def test_one_type_rule_for_python_param_and_config(capsys, tmp_path, name, key, value, text, expected):
    # Python
    with pytest.raises(AttackError) as py:
        get_attack(name, **{key: value})
    assert py.value.field == key
    assert f"attack {name!r}: parameter {key} {expected}" in str(py.value)
    # --param, before the model is loaded
    code = main([*NO_MODEL, "--attack", name, "--eps", "0.1", "--param", f"{key}={text}"])
    _, err = capsys.readouterr()
    assert code == 2 and f"--param {key}: attack {name!r}: parameter {key} {expected}" in err, err
    # a config
    cfg = parse_config(
        {
            "model": {"spec": "zoo:digits-cnn"},
            "data": {"spec": "builtin:digits"},
            "threat": {"eps": [0.1]},
            "attacks": [{"name": name, "params": {key: value}}],
        }
    )
    with pytest.raises(ConfigError) as conf:
        check_config(cfg)
    assert conf.value.field == f"attacks.0.params.{key}" and py.value.message == conf.value.message


@pytest.mark.parametrize(
    "value, expected",
    [(5, int), (np.int64(5), int), (1, float), (0.5, float), (np.float32(0.5), float), (False, bool)],
)
def test_accepted_values(value, expected):
    assert param_type_problem(value, expected) is None


def test_every_registered_attack_passes_its_own_defaults():
    for name, cls in available().items():
        defaults = cls.defaults()
        for key, expected in cls.param_types().items():
            assert param_type_problem(defaults[key], expected) is None or defaults[key] is None, (name, key)


def test_an_optional_parameter_takes_none_and_an_undeclared_type_is_still_named():
    assert get_attack("pgd", step_size=None).params["step_size"] is None
    with pytest.raises(AttackError) as info:  # step_size's default (None) does not show its type
        get_attack("pgd", step_size="abc")
    assert info.value.field == "step_size" and "'pgd'" in str(info.value)


def test_the_steps_flag_is_named_in_a_type_error(capsys):
    # --steps is parsed as an int by argparse; a wrapped attack's error names the flag it came from.
    code = main([*NO_MODEL, "--attack", "pgd", "--eps", "0.1", "--steps", "0"])
    _, err = capsys.readouterr()
    assert code == 2 and "--steps" in err and "steps must be >= 1" in err


@pytest.mark.parametrize(
    "seed", ["1000000000000000000000000000000", str(2**63), str(2**32), "-1", "abc", "1.5"]
)
def test_a_seed_out_of_range_names_the_flag_and_the_range(capsys, seed):
    with pytest.raises(SystemExit) as exc:
        main([*NO_MODEL, "--attack", "pgd", "--eps", "0.1", "--seed", seed])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "argument --seed: must be an integer from 0 to 4294967295" in err and "internal" not in err


@pytest.mark.parametrize("case", ["missing-folder", "is-a-folder", "folder-is-a-file", "not-writable"])
def test_a_bad_save_path_is_named_before_anything_runs(capsys, monkeypatch, tmp_path, case):
    if case == "missing-folder":
        target, needle = tmp_path / "nope" / "adv.npz", "does not exist"
    elif case == "is-a-folder":
        target, needle = tmp_path / "adv.npz", "is a folder"
        target.mkdir()
    elif case == "folder-is-a-file":
        (tmp_path / "file").write_text("x")
        target, needle = tmp_path / "file" / "adv.npz", "is not a folder"
    else:
        target, needle = tmp_path / "adv.npz", "not writable"
        monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as a read-only folder (even for root)
    code = main([*NO_MODEL, "--attack", "pgd", "--eps", "0.1", "--save", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and "--save:" in err and needle in err, err
    assert "missing-model" not in err  # refused before the model was looked at


def test_duplicate_eps_on_the_command_line(capsys):
    code = main([*NO_MODEL, "--attack", "pgd", "--eps", "0.1", "0.10000000001"])
    err = capsys.readouterr().err
    assert code == 2 and "--eps: eps 0.1 and 0.10000000001 are the same radius" in err
