"""Every kind of plug-in is one registry of the one helper, and answers an unknown name alike.

``unknown <kind> 'x'``, then ``Known: <every registered name>`` (and the closest one, when there
is one), raised as the user-facing error of that kind (exit code 2 in the CLI).
"""

from __future__ import annotations

import pytest

from attacks.registry import ATTACKS, get_attack
from defenses.objective import OBJECTIVES, get_objective_class
from robustness import zoo
from robustness.cli import main
from robustness.core.corruptions import CORRUPTIONS, get_corruption
from robustness.core.errors import AttackError, ConfigError, ModelError, UsageError
from robustness.core.registry import Registry

KINDS = [
    pytest.param(ATTACKS, get_attack, "pgdd", "attack", AttackError, "'pgd'", id="attack"),
    pytest.param(
        OBJECTIVES, get_objective_class, "pgd-att", "training method", ConfigError, "'pgd-at'", id="objective"
    ),
    pytest.param(zoo.ZOO, zoo.entry, "digits-cnm", "zoo model", ModelError, "'digits-cnn'", id="zoo"),
    pytest.param(
        CORRUPTIONS,
        get_corruption,
        "gausian_noise",
        "corruption",
        UsageError,
        "'gaussian_noise'",
        id="corruption",
    ),
]


@pytest.mark.parametrize("registry, lookup, name, kind, error, closest", KINDS)
def test_unknown_name_error_is_uniform(registry, lookup, name, kind, error, closest):
    assert isinstance(registry, Registry) and registry.kind == kind
    with pytest.raises(error) as raised:
        lookup(name)
    exc = raised.value
    assert exc.message == f"unknown {kind} {name!r}"
    assert exc.fix.startswith(f"Known: {', '.join(registry.names())}. Did you mean {closest}?")
    assert exc.field in ("attack", "method", "model", "corruption")


@pytest.mark.parametrize(
    "argv",
    [
        [
            "attack",
            "--model",
            "zoo:digits-cnn",
            "--data",
            "builtin:digits",
            "--attack",
            "pgdd",
            "--eps",
            "0.1",
        ],
        ["harden", "--model", "zoo:digits-cnn", "--data", "builtin:digits:train", "--method", "pgd-att"],
        ["evaluate", "--model", "zoo:digits-cnm", "--data", "builtin:digits"],
    ],
    ids=["attack", "objective", "zoo"],
)
def test_unknown_names_on_the_command_line(argv, capsys, tmp_path):
    if argv[0] == "harden":
        argv = [*argv, "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown " in err and "Known: " in err and "Did you mean" in err


def test_registries_find_the_built_in_plug_ins_by_walking_their_folders():
    assert {"pgd", "apgd-ce", "square", "autoattack"} <= set(ATTACKS.names())
    assert ATTACKS.package == "attacks" and OBJECTIVES.package == "defenses.objectives"
    assert {"standard", "pgd-at", "trades", "fast-at", "distillation"} <= set(OBJECTIVES.names())
    assert {"digits-cnn", "digits-cnn-pgdat"} <= set(zoo.ZOO.names())
