"""Factory arguments: ``--model-arg KEY=VALUE`` and ``model.args`` passed to a ``package.module:callable``."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from robustness.cli import main
from robustness.config import apply_overrides, parse_config
from robustness.core.errors import ModelError, UsageError
from robustness.core.model import load_model

FACTORY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    CALLS = []

    def make(num_classes=10, width=8, act="relu"):
        CALLS.append({"num_classes": num_classes, "width": width, "act": act})
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(64, width), nn.ReLU() if act == "relu" else nn.Tanh(), nn.Linear(width, num_classes)
        )
    """
)


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """Import ``rb_margs_models`` from a temporary folder on sys.path."""
    import importlib
    import sys

    (tmp_path / "rb_margs_models.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("rb_margs_models", None)
    mod = importlib.import_module("rb_margs_models")
    yield mod
    sys.modules.pop("rb_margs_models", None)


def test_args_reach_the_factory_and_are_recorded(factory):
    mut = load_model("rb_margs_models:make", model_args={"num_classes": 3, "width": 5}, device="cpu")
    assert factory.CALLS[-1] == {"num_classes": 3, "width": 5, "act": "relu"}
    assert mut(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert mut.info()["args"] == {"num_classes": 3, "width": 5}


def test_no_args_leave_the_info_as_before(factory):
    assert "args" not in load_model("rb_margs_models:make", device="cpu").info()


def test_unknown_arg_is_a_model_error_saying_how_to_fix(factory):
    with pytest.raises(ModelError, match="unexpected keyword") as e:
        load_model("rb_margs_models:make", model_args={"depth": 3})
    assert "--model-arg" in e.value.fix


@pytest.mark.parametrize("spec", ["zoo:digits-cnn", "FOLDER", "model.pt2"])
def test_args_with_a_non_factory_spec_are_refused(spec, tmp_path):
    spec = str(tmp_path) if spec == "FOLDER" else spec
    with pytest.raises(ModelError, match="only passed to a factory") as e:
        load_model(spec, model_args={"num_classes": 3})
    assert e.value.field == "model.args"


def test_args_with_weights(factory, tmp_path):
    net = factory.make(num_classes=3, width=6)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    mut = load_model(
        "rb_margs_models:make",
        model_args={"num_classes": 3, "width": 6},
        weights=str(tmp_path / "w.safetensors"),
        device="cpu",
    )
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(mut(x), net(x))
    # the default width does not fit these weights: the named weights error, not a silent load
    with pytest.raises(ModelError):
        load_model(
            "rb_margs_models:make", model_args={"num_classes": 3}, weights=str(tmp_path / "w.safetensors")
        )


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_evaluate_passes_json_and_string_values(factory, capsys):
    code, out, err = run_cli(
        capsys,
        "evaluate",
        "--model",
        "rb_margs_models:make",
        "--model-arg",
        "num_classes=10",
        "--model-arg",
        "width=4",
        "--model-arg",
        "act=tanh",
        "--data",
        "builtin:digits",
        "--n-examples",
        "20",
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    assert factory.CALLS[-1] == {"num_classes": 10, "width": 4, "act": "tanh"}
    assert 0.0 <= json.loads(out)["accuracy"] <= 1.0


def test_cli_bad_model_arg_syntax_is_named(factory, capsys):
    code, _, err = run_cli(
        capsys, "evaluate", "--model", "rb_margs_models:make", "--model-arg", "width",
        "--data", "builtin:digits", "--device", "cpu",
    )  # fmt: skip
    assert code == 2
    assert "--model-arg expects KEY=VALUE" in err and "Traceback" not in err


def test_cli_model_arg_with_zoo_is_refused(capsys):
    code, _, err = run_cli(
        capsys, "evaluate", "--model", "zoo:digits-cnn", "--model-arg", "num_classes=3",
        "--data", "builtin:digits", "--device", "cpu",
    )  # fmt: skip
    assert code == 2
    assert "only passed to a factory" in err


def config(outdir, **model) -> dict:
    return {
        "model": {"spec": "rb_margs_models:make", "device": "cpu", **model},
        "data": {"spec": "builtin:digits", "n_examples": 8, "batch_size": 8},
        "threat": {"norm": "linf", "eps": [0.05]},
        "attacks": [{"name": "pgd", "params": {"steps": 2}}],
        "sanity_checks": {"enabled": False, "reason": "an untrained test factory"},
        "output": {"dir": str(outdir), "formats": ["json"]},
    }


def test_config_args_and_overrides_merge(tmp_path):
    cfg = parse_config(config(tmp_path, args={"num_classes": 10, "width": 4}))
    assert cfg.model.args == {"num_classes": 10, "width": 4}
    merged = apply_overrides(cfg, model_args={"width": 7})
    assert merged.model.args == {"num_classes": 10, "width": 7}
    assert apply_overrides(parse_config(config(tmp_path)), model_args={"width": 7}).model.args == {"width": 7}


def test_validate_accepts_model_args(factory, tmp_path, capsys):
    import yaml

    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path / "out", args={"num_classes": 10, "width": 4})))
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 0, err


def test_audit_records_model_args_in_results(factory, tmp_path):
    from robustness.audit import run_audit

    res = run_audit(config(tmp_path / "out", args={"num_classes": 10, "width": 4}), model_args={"width": 3})
    assert factory.CALLS[-1]["width"] == 3
    assert res["model"]["args"] == {"num_classes": 10, "width": 3}
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["model"]["args"] == {"num_classes": 10, "width": 3}


def test_harden_refuses_model_arg_with_zoo():
    import argparse

    from robustness.cli.harden import resolve_start

    args = argparse.Namespace(
        model="zoo:digits-cnn", model_arg=["num_classes=3"], weights=None, init="auto", trust_model=False
    )
    with pytest.raises(UsageError, match="only passed to a factory"):
        resolve_start(args)
    args.model = "rb_margs_models:make"
    assert resolve_start(args)["architecture"] == {
        "factory": "rb_margs_models:make",
        "kwargs": {"num_classes": 3},
    }


def test_validate_refuses_args_for_a_zoo_model(tmp_path, capsys):
    import yaml

    cfg = config(tmp_path / "out", args={"num_classes": 3})
    cfg["model"]["spec"] = "zoo:digits-cnn"
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    assert "model.args" in err and "only passed to a factory" in err
