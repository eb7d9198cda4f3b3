"""Audit configs: schema, key paths in errors, presets, overrides, the validate/schema commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustness.config import (
    CHECKS,
    PRESET_ATTACKS,
    apply_overrides,
    check_config,
    load_config,
    parse_config,
    resolve_attacks,
)
from robustness.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits-audit.yaml"


def base(**extra):
    cfg = {
        "model": {"spec": "zoo:digits-cnn"},
        "data": {"spec": "builtin:digits"},
        "threat": {"eps": [0.1, 0.05]},
    }
    cfg.update(extra)
    return cfg


def error_of(cfg) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_config(parse_config(cfg))
    return info.value


def test_example_config_is_valid_and_resolves_the_standard_preset():
    cfg = load_config(EXAMPLE)
    attacks = check_config(cfg)
    assert [a.name for a in attacks] == ["apgd-ce", "apgd-t", "fab", "square"]
    by = {a.name: a.params for a in attacks}
    assert by["apgd-ce"]["steps"] == 100
    assert (by["apgd-t"]["steps"], by["apgd-t"]["n_target_classes"]) == (100, 9)
    assert (by["fab"]["steps"], by["fab"]["n_target_classes"]) == (100, 9)
    assert (by["square"]["n_queries"], by["square"]["p_init"]) == (5000, 0.8)
    assert cfg.threat.eps == [0.05, 0.1, 0.2]
    assert cfg.output.dir == "runs/digits-audit"


def test_defaults_and_sorted_eps():
    cfg = parse_config(base())
    assert cfg.threat.eps == [0.05, 0.1]
    assert cfg.attacks == "standard"
    assert cfg.sanity_checks.enabled and cfg.gates.judge == "ci_low"
    assert cfg.output.formats == ["json", "pdf", "html", "junit", "md"]
    assert parse_config(base(threat={"eps": 0.1})).threat.eps == [0.1]


def test_misspelt_key_names_its_path_and_suggests_the_right_one():
    err = error_of(base(gates={"min_robust_acuracy": {0.1: 0.5}}))
    assert err.field == "gates.min_robust_acuracy"
    assert "min_robust_accuracy" in str(err) and "unknown key" in str(err)
    err = error_of(base(modle={"spec": "x"}))
    assert err.field == "modle" and "'model'" in str(err)


def test_bad_value_names_the_eps_key_path():
    err = error_of(base(gates={"min_robust_accuracy": {0.1: 1.5}}))
    assert err.field == "gates.min_robust_accuracy.0.1"
    assert "less than or equal to 1" in str(err)


def test_missing_section_and_bad_eps():
    err = error_of({"model": {"spec": "zoo:digits-cnn"}, "threat": {"eps": [0.1]}})
    assert err.field == "data" and "missing" in str(err)
    err = error_of(base(threat={"eps": [-0.1]}))
    assert err.field == "threat.eps.0"
    err = error_of(base(threat={"eps": [2.0]}))  # beyond the [0, 1] input range for linf
    assert err.field == "threat.eps"


def test_attacks_must_be_a_preset_or_a_list():
    err = error_of(base(attacks="fast"))
    assert err.field == "attacks" and "'quick'" in str(err)
    err = error_of(base(attacks=[{"name": "pgd", "parms": {}}]))
    assert err.field == "attacks.0.parms"


def test_unknown_attack_and_bad_params_and_unsupported_norm():
    err = error_of(base(attacks=[{"name": "apgd_ce"}]))
    assert err.field == "attacks.0.name" and "apgd-ce" in str(err)
    err = error_of(base(attacks=[{"name": "pgd", "params": {"stepz": 3}}]))
    assert err.field == "attacks.0.params" and "stepz" in str(err)
    err = error_of(base(threat={"norm": "l1", "eps": [1.0]}, attacks=[{"name": "square"}]))
    assert err.field == "attacks.0" and "does not support norm l1" in str(err)


def test_presets_drop_attacks_without_the_norm():
    # No attack of the standard preset supports l1: the config is refused, naming the norm.
    assert resolve_attacks(parse_config(base(threat={"norm": "l1", "eps": [1.0]}))) == []
    err = error_of(base(threat={"norm": "l1", "eps": [1.0]}))
    assert err.field == "attacks" and "norm l1" in str(err)
    cfg = parse_config(base(threat={"norm": "l2", "eps": [0.5]}, attacks="quick"))
    assert [a.name for a in check_config(cfg)] == [a["name"] for a in PRESET_ATTACKS["quick"]]


def test_waivers_need_a_reason_and_a_known_check():
    err = error_of(base(sanity_checks={"waive": {"outputs_logits": ""}}))
    assert err.field == "sanity_checks.waive" and "written reason" in str(err)
    err = error_of(base(sanity_checks={"waive": {"outputs_logit": "the model is calibrated"}}))
    assert "outputs_logits" in str(err)
    cfg = parse_config(base(sanity_checks={"waive": {"outputs_logits": "served as probabilities by design"}}))
    assert cfg.sanity_checks.waive == {"outputs_logits": "served as probabilities by design"}
    err = error_of(base(sanity_checks={"enabled": False}))
    assert err.field == "sanity_checks.reason"
    assert (
        set(CHECKS) >= {"iterative_beats_single_step", "outputs_logits", "binarization"} and len(CHECKS) == 10
    )


def test_gate_eps_must_be_evaluated_and_max_drop_needs_a_baseline(tmp_path):
    err = error_of(base(gates={"min_robust_accuracy": {0.3: 0.5}}))
    assert err.field == "gates.min_robust_accuracy.0.3" and "not in threat.eps" in str(err)
    err = error_of(base(gates={"max_drop": 0.02}))
    assert err.field == "gates.baseline"
    err = error_of(base(gates={"max_drop": 0.02, "baseline": str(tmp_path / "none.json")}))
    assert "baseline not found" in str(err)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    err = error_of(base(gates={"max_drop": 0.02, "baseline": str(bad)}))
    assert err.field == "gates.baseline" and "not a results.json" in str(err)


def test_toml_equals_yaml(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text(
        '[model]\nspec = "zoo:digits-cnn"\n[data]\nspec = "builtin:digits"\nn_examples = 50\n'
        "[threat]\neps = [0.05, 0.1]\n[gates]\nmin_clean_accuracy = 0.9\n"
        '[gates.min_robust_accuracy]\n"0.05" = 0.7\n'
    )
    yaml_ = tmp_path / "a.yaml"
    yaml_.write_text(
        "model: {spec: 'zoo:digits-cnn'}\ndata: {spec: 'builtin:digits', n_examples: 50}\n"
        "threat: {eps: [0.05, 0.1]}\ngates: {min_clean_accuracy: 0.9, min_robust_accuracy: {0.05: 0.7}}\n"
    )
    assert load_config(toml).model_dump() == load_config(yaml_).model_dump()
    check_config(load_config(toml))


def test_overrides_replace_the_file_values():
    cfg = apply_overrides(
        parse_config(base()), eps=[0.2], preset="quick", n_examples=10, seed=3, output_dir="x", device="cpu"
    )
    assert cfg.threat.eps == [0.2] and cfg.attacks == "quick" and cfg.data.n_examples == 10
    assert cfg.seed == 3 and cfg.data_seed == 3 and cfg.output.dir == "x" and cfg.model.device == "cpu"
    with pytest.raises(ConfigError):
        apply_overrides(parse_config(base()), n_examples=0)


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "robustness", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_validate_and_schema_commands(tmp_path):
    ok = run_cli("validate", str(EXAMPLE))
    assert ok.returncode == 0, ok.stderr
    assert "valid" in ok.stdout and "apgd-ce, apgd-t, fab, square" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("min_clean_accuracy", "min_clean_acc"))
    out = run_cli("validate", str(bad))
    assert out.returncode == 2
    assert "gates.min_clean_acc" in out.stderr and "min_clean_accuracy" in out.stderr
    schema = run_cli("schema")
    assert schema.returncode == 0
    doc = json.loads(schema.stdout)
    assert {"model", "data", "threat", "attacks", "sanity_checks", "gates", "output"} <= set(
        doc["properties"]
    )
    assert doc["additionalProperties"] is False


def test_the_preset_names_are_written_once():
    import typing

    from robustness.config import AuditConfig
    from robustness.presets import PRESETS

    literal = typing.get_args(AuditConfig.model_fields["attacks"].annotation)[0]
    assert typing.get_args(literal) == PRESETS
    from robustness.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    preset = next(a for a in sub.choices["audit"]._actions if a.dest == "preset")
    assert tuple(preset.choices) == PRESETS
