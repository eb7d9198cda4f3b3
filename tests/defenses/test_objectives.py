"""Training methods are plug-ins: one file declares a method, and the config and the CLI follow.

Every registered method is read from the registry when the tests run, so a method added later
is checked without editing this file. A toy method, registered with the call a method's file
makes, shows up in ``robustness harden --help`` and trains through the CLI.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional

from defenses import objective
from defenses.config import HYPERPARAMETER_FIELDS, TRAINER_OPTIONS, TrainConfig
from defenses.objective import PARAM_TYPES, HyperParameter, Objective, register_objective
from robustness.cli import main
from robustness.core.errors import ConfigError
from robustness.core.registry import Registry

HARDEN = ["harden", "--model", "zoo:digits-cnn", "--data", "builtin:digits:train", "--device", "cpu"]


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def private_registry(monkeypatch):
    """A copy of the method registry for one test: what the test registers is gone after it."""
    registry = Registry("training method", error=ConfigError, field="method")
    for name, cls in objective.OBJECTIVES.items().items():
        registry.add(name, cls)
    monkeypatch.setattr(objective, "OBJECTIVES", registry)
    return registry


def register_toy() -> type[Objective]:
    """What a file ``defenses/objectives/toy_smoothing.py`` would hold."""

    @register_objective
    class ToySmoothing(Objective):
        name = "toy-smoothing"
        description = "Cross-entropy with label smoothing (a test's toy method)."
        hyperparameters = {
            "smoothing": HyperParameter(0.1, float, "label smoothing", minimum=0.0),
            "reduction": HyperParameter(
                "mean", str, "how the batch's losses combine", choices=("mean", "sum")
            ),
        }

        def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(x)
            loss = functional.cross_entropy(
                logits.float(),
                y,
                label_smoothing=float(self.params["smoothing"]),
                reduction=self.params["reduction"],
            )
            return loss, logits

    return ToySmoothing


# -- every registered method ---------------------------------------------------------------------
def test_every_method_declares_typed_defaults():
    methods = objective.OBJECTIVES.items()
    assert {"standard", "pgd-at", "trades", "fast-at", "distillation"} <= set(methods)
    for name, cls in methods.items():
        assert cls.name == name and cls.description, name
        assert set(cls.defaults()) == set(cls.hyperparameters) == set(cls.param_types()), name
        for key, param in cls.hyperparameters.items():
            where = f"{name}.{key}"
            assert isinstance(param, HyperParameter) and param.help, where
            assert param.type in PARAM_TYPES, where
            assert key.isidentifier() and key not in TRAINER_OPTIONS, where
            assert HYPERPARAMETER_FIELDS.get(key, param.type) is param.type, where
            if param.default is not None:
                assert type(param.default) is param.type, where
                param.check(key, param.default)  # the default passes the method's own validation


def test_every_method_resolves_with_its_defaults():
    for name, cls in objective.OBJECTIVES.items().items():
        config = TrainConfig(method=name, eps=0.1 if cls.adversarial else None).resolved()
        assert config.method_params() == cls.defaults(), name


def test_a_mistaken_declaration_is_refused_when_registered(private_registry):
    def declare(name: str, param: object) -> None:
        register_objective(type("Bad", (Objective,), {"name": "bad", "hyperparameters": {name: param}}))

    with pytest.raises(ValueError, match="is not a float"):
        declare("smoothing", HyperParameter(1, float, "an int default"))
    with pytest.raises(ValueError, match="own check"):
        declare("smoothing", HyperParameter(-1.0, float, "out of its range", minimum=0.0))
    with pytest.raises(ValueError, match="option of the trainer"):
        declare("lr", HyperParameter(0.1, float, "the trainer's"))
    with pytest.raises(ValueError, match="is a int wherever"):
        declare("steps", HyperParameter(1.0, float, "steps are integers"))
    with pytest.raises(ValueError, match="HyperParameter"):
        declare("smoothing", 0.1)
    assert "bad" not in private_registry


def test_hyper_parameters_are_checked_from_the_declaration():
    with pytest.raises(ConfigError, match="beta must be a finite number >= 0, got -1.0"):
        TrainConfig(method="trades", eps=0.1, beta=-1.0).resolved()
    with pytest.raises(ConfigError, match="steps must be an integer >= 1, got 2.5"):
        TrainConfig(method="pgd-at", eps=0.1, params={"steps": 2.5}).resolved()
    with pytest.raises(ConfigError, match="beta does not apply to method 'pgd-at'.*takes: steps, step_size"):
        TrainConfig(method="pgd-at", eps=0.1, params={"beta": 1.0}).resolved()
    with pytest.raises(ConfigError, match="given twice"):
        TrainConfig(method="pgd-at", eps=0.1, steps=3, params={"steps": 3}).resolved()
    # A hyper-parameter with a field of its own may come through params too: one resolved config.
    assert (
        TrainConfig(method="pgd-at", eps=0.1, params={"steps": 3}).resolved()
        == TrainConfig(method="pgd-at", eps=0.1, steps=3).resolved()
    )


def test_run_identity_of_the_built_in_methods_is_unchanged():
    # Methods whose hyper-parameters all have fields of their own write no "params" key, so runs
    # and model cards written before hyper-parameters were declared resume and compare as before.
    assert "params" not in TrainConfig(method="trades", eps=0.1).resolved().to_dict()
    assert TrainConfig.from_dict(TrainConfig(method="trades", eps=0.1).to_dict()).method == "trades"


# -- a toy method, registered as a file would -----------------------------------------------------
def test_a_registered_method_is_in_the_help_and_trains_from_the_cli(
    private_registry, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: argparse breaks lines at hyphens ("toy-\nsmoothing")
    register_toy()
    with pytest.raises(SystemExit) as done:
        main(["harden", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    choices = text.split("--method METHOD the training method: ", 1)[1].split(" (default standard")[0]
    # Every listed method of the registry, the toy included, in the registry's (sorted) order.
    assert "toy-smoothing" in objective.available()
    assert choices == ", ".join(sorted(objective.available()))
    assert "toy-smoothing: Cross-entropy with label smoothing" in text
    assert "--smoothing SMOOTHING label smoothing, default 0.1 (toy-smoothing)" in text
    assert "--reduction {mean,sum}" in text

    out = tmp_path / "toy"
    args = [*HARDEN, "--n-examples", "200", "--epochs", "1", "--quiet", "--method", "toy-smoothing"]
    code, text = run(capsys, *args, "--smoothing", "0.2", "--param", "reduction=sum", "--output", str(out))
    assert code == 0, text
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["method"] == "toy-smoothing"
    assert card["training"]["config"]["params"] == {"smoothing": 0.2, "reduction": "sum"}
    assert card["metrics"]["epochs_run"] == 1


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--smoothing", "-0.5"], "smoothing must be a finite number >= 0, got -0.5"),
        (["--param", "smoothing=abc"], "smoothing must be a number, got 'abc'"),
        (["--param", "reduction=max"], "reduction must be one of: mean, sum, got 'max'"),
        (["--param", "beta=3"], "beta does not apply to method 'toy-smoothing'"),
        (["--smoothing", "0.2", "--param", "smoothing=0.3"], "given twice"),
        (["--param", "smoothing"], "KEY=VALUE"),
    ],
)
def test_toy_method_mistakes_exit_2(private_registry, capsys, tmp_path, extra, needle):
    register_toy()
    args = [*HARDEN, "--method", "toy-smoothing", "--epochs", "1", *extra, "--output", str(tmp_path / "o")]
    code, text = run(capsys, *args)
    assert code == 2, text
    assert needle in text and "Traceback" not in text


def test_flags_and_param_give_the_same_config(capsys, tmp_path, monkeypatch):
    seen = []

    def stop_after_building(self: TrainConfig, bounds: tuple[float, float] = (0.0, 1.0)) -> TrainConfig:
        seen.append(self)
        raise ConfigError("stopped once the config was built")

    monkeypatch.setattr(TrainConfig, "resolved", stop_after_building)
    for given in (["--beta", "3", "--steps", "4"], ["--param", "beta=3", "--param", "steps=4"]):
        code, text = run(
            capsys, *HARDEN, "--method", "trades", "--eps", "0.1", *given, "--output", str(tmp_path)
        )
        assert code == 2 and "stopped once the config was built" in text
    first, second = seen
    assert first.params == second.params == {"beta": 3.0, "steps": 4}
