"""Hostile and careless configs: every one is a named input error.

YAML traps (repeated keys, anchors and alias bombs, huge/binary/folder configs), attack
parameter types in configs, seeds, the output folder, duplicate eps, and ``validate``
checking what ``audit`` checks when it starts.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustness.cli import main
from robustness.config import (
    MAX_CONFIG_BYTES,
    SEED_MAX,
    apply_overrides,
    check_config,
    load_config,
    parse_config,
    read_config_file,
)
from robustness.core.errors import ConfigError, ThreatModelError
from robustness.core.threat import check_eps


def config(tmp_path: Path, **sections) -> dict:
    cfg = {
        "model": {"spec": "zoo:digits-cnn"},
        "data": {"spec": "builtin:digits"},
        "threat": {"eps": [0.05, 0.1]},
        "output": {"dir": str(tmp_path / "out")},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write(tmp_path: Path, content: str | bytes | dict, name: str = "audit.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, dict):
        content = yaml.safe_dump(content)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def validate(capsys, path: Path) -> tuple[int, str, str]:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_named_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.startswith("robustness validate: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# ---------------------------------------------------------------------------------------
# Item 5: YAML traps


DUPLICATE_GATES = """\
model: {spec: "zoo:digits-cnn"}
gates:
  min_clean_accuracy: 0.9
data: {spec: "builtin:digits"}
threat: {eps: [0.1]}
output: {dir: OUT}
gates:
  judge: point
"""


@pytest.mark.parametrize(
    "text, field, lines",
    [
        (DUPLICATE_GATES, "gates", (2, 7)),
        (
            "gates:\n  min_robust_accuracy:\n    0.1: 0.5\n    0.10: 0.6\n",  # one key, spelt twice
            "gates.min_robust_accuracy.0.10",
            (3, 4),
        ),
        ("attacks:\n  - name: pgd\n    params: {steps: 5}\n    name: fgsm\n", "attacks.0.name", (2, 4)),
    ],
)
def test_a_repeated_key_names_the_key_and_both_lines(capsys, tmp_path, text, field, lines):
    path = write(tmp_path, text.replace("OUT", str(tmp_path / "out")))
    code, _, err = validate(capsys, path)
    assert_named_error(code, err, f"{field}:", "given twice", f"line {lines[0]}", f"line {lines[1]}")


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi")  # 9 ** 9 = 387 million strings once expanded
        ),
        "model: {spec: '*i'}",
    ]
)


def test_an_alias_bomb_is_refused_fast_in_bounded_memory_without_echoing_it(capsys, tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    assert path.stat().st_size < 1024
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            read_config_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0
    assert peak < 20e6
    assert "anchors and aliases are not allowed" in str(info.value) and "line 1" in str(info.value)
    assert str(info.value).count("lol") == 0
    code, _, err = validate(capsys, path)  # and through the CLI: exit 2, one short paragraph
    assert_named_error(code, err, "CONFIG:", "aliases")
    assert len(err) < 400


def test_a_harmless_alias_is_refused_too_naming_it(tmp_path):
    path = write(tmp_path, "threat: {eps: [0.1]}\nmodel: &m {spec: 'zoo:digits-cnn'}\nx: *m\n")
    with pytest.raises(ConfigError, match=r"&m at line 2"):
        read_config_file(path)
    path = write(tmp_path, "a: [1]\nb: *undefined\n")
    with pytest.raises(ConfigError, match=r"\*undefined at line 2"):
        read_config_file(path)


@pytest.mark.parametrize("kind", ["too-large", "folder", "not-utf8", "binary-model"])
def test_files_that_are_not_configs_are_named_input_errors(capsys, tmp_path, kind):
    if kind == "too-large":
        path = write(tmp_path, "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
        needle = "larger than 1 MB"
    elif kind == "folder":
        path = tmp_path / "configs.yaml"
        path.mkdir()
        needle = "is a folder"
    elif kind == "not-utf8":
        path = write(tmp_path, b"model:\n  spec: caf\xe9\n")
        needle = "not UTF-8 text (byte 0xe9 at line 2)"
    else:
        path = write(tmp_path, bytes(range(256)) * 4, name="model.pt")
        needle = "not UTF-8"
    code, _, err = validate(capsys, path)
    assert_named_error(code, err, "CONFIG:", needle)


@pytest.mark.parametrize("trap", ["repeated-key", "alias-bomb", "folder"])
def test_the_audit_command_refuses_the_same_traps(capsys, tmp_path, trap):
    if trap == "folder":
        path = tmp_path / "audit.yaml"
        path.mkdir()
    else:
        text = DUPLICATE_GATES if trap == "repeated-key" else BILLION_LAUGHS
        path = write(tmp_path, text.replace("OUT", str(tmp_path / "out")))
    code = main(["audit", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("robustness audit: error: ") and "internal error" not in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "name, text",
    [("deep.yaml", "a: " + "[" * 5000 + "]" * 5000), ("deep.toml", "a = " + "[" * 5000 + "]" * 5000)],
)
def test_absurd_nesting_is_refused_not_a_recursion_error(tmp_path, name, text):
    with pytest.raises(ConfigError, match="nested"):
        read_config_file(write(tmp_path, text, name=name))


@pytest.mark.parametrize(
    "text, needle",
    [
        ("seed = 1\nseed = 2\n", "at line 2"),
        ('[gates]\njudge = "point"\n[gates]\nmin_clean_accuracy = 0.5\n', "('gates',) twice (at line 3"),
    ],
)
def test_toml_repeated_keys_name_the_line(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        read_config_file(write(tmp_path, text, name="audit.toml"))
    assert needle in str(info.value) and info.value.field == "CONFIG" and "once" in str(info.value)


def test_an_error_quotes_a_huge_value_only_briefly(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, config(tmp_path, attacks="x" * 100_000)))
    assert info.value.field == "attacks" and len(str(info.value)) < 600


def test_plain_yaml_still_loads(tmp_path):
    # Merge keys without anchors, a BOM, comments: nothing legitimate is refused.
    text = "\ufeff# audit\n" + yaml.safe_dump(config(tmp_path)) + "gates: {<<: {judge: point}}\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.gates.judge == "point" and cfg.threat.eps == [0.05, 0.1]


# ---------------------------------------------------------------------------------------
# Item 8: attack parameter types in configs, seeds, the output folder


@pytest.mark.parametrize(
    "name, params, key, expected",
    [
        ("pgd", {"steps": 2.5}, "steps", "must be an integer, got 2.5"),
        ("pgd", {"steps": True}, "steps", "must be an integer, got True (a boolean)"),
        ("pgd", {"steps": 3.0}, "steps", "must be an integer, got 3.0"),
        ("pgd", {"steps": "abc"}, "steps", "must be an integer, got 'abc' (a string)"),
        ("square", {"n_queries": 1.5}, "n_queries", "must be an integer, got 1.5"),
        ("apgd-ce", {"rho": "high"}, "rho", "must be a finite number, got 'high'"),
        ("pgd", {"random_start": 1}, "random_start", "must be true or false, got 1"),
    ],
)
def test_attack_parameter_types_in_a_config(capsys, tmp_path, name, params, key, expected):
    path = write(tmp_path, config(tmp_path, attacks=[{"name": name, "params": params}]))
    code, _, err = validate(capsys, path)
    assert_named_error(
        code, err, f"attacks.0.params.{key}:", f"attack {name!r}", f"parameter {key}", expected
    )


def test_an_integer_for_a_float_parameter_is_fine(tmp_path):
    cfg = parse_config(
        config(tmp_path, attacks=[{"name": "square", "params": {"p_init": 1, "n_queries": 10}}])
    )
    assert check_config(cfg)[0].params == {"p_init": 1, "n_queries": 10}


@pytest.mark.parametrize("field", ["seed", "data.seed"])
@pytest.mark.parametrize("value", [10**30, 2**63, SEED_MAX + 1, -1, True, 1.5])
def test_a_seed_out_of_range_names_the_range(tmp_path, field, value):
    section = {"data": {"seed": value}} if field == "data.seed" else {"seed": value}
    with pytest.raises(ConfigError) as info:
        parse_config(config(tmp_path, **section))
    assert info.value.field == field and f"from 0 to {SEED_MAX}" in str(info.value)


def test_the_largest_seed_is_accepted_and_an_override_is_checked(tmp_path):
    cfg = parse_config(config(tmp_path, seed=SEED_MAX, data={"seed": 0}))
    assert cfg.seed == SEED_MAX and cfg.data_seed == 0
    with pytest.raises(ConfigError) as info:
        apply_overrides(cfg, seed=10**30)  # robustness audit --seed
    assert info.value.field == "seed"


def test_a_huge_audit_seed_flag_is_a_named_config_error(capsys, tmp_path):
    code = main(["audit", str(write(tmp_path, config(tmp_path))), "--seed", str(10**30)])
    err = capsys.readouterr().err
    assert code == 2 and "seed: a seed must be an integer from 0 to 4294967295" in err, err


def test_an_empty_output_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        parse_config(config(tmp_path, output={"dir": ""}))
    assert info.value.field == "output.dir" and "empty" in str(info.value)
    with pytest.raises(ConfigError) as info:
        apply_overrides(parse_config(config(tmp_path)), output_dir="  ")  # robustness audit -o ""
    assert info.value.field == "output.dir"


# ---------------------------------------------------------------------------------------
# Item 8: validate checks what the audit checks when it starts


@pytest.fixture
def files(tmp_path):
    """Real files for a config to name: data, weights, a watermark key, a plain file."""
    np.savez(tmp_path / "data.npz", x=np.zeros((5, 1, 8, 8), np.float32), y=np.arange(5))
    np.savez(tmp_path / "no-y.npz", x=np.zeros((5, 1, 8, 8), np.float32))
    (tmp_path / "w.safetensors").write_bytes(b"not checked here")
    (tmp_path / "key.json").write_text("{}")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "text.npz").write_text("not a zip")
    return tmp_path


def test_a_config_naming_existing_files_is_valid(capsys, files):
    cfg = config(
        files,
        model={"spec": "robustness.zoo:digits_cnn", "weights": str(files / "w.safetensors")},
        data={"spec": str(files / "data.npz"), "n_examples": 5},
        watermark={"key": str(files / "key.json"), "surrogates": []},
    )
    code, out, err = validate(capsys, write(files, cfg))
    assert code == 0, err
    assert "valid" in out


@pytest.mark.parametrize(
    "sections, field, needle",
    [
        ({"model": {"spec": "missing.pt2"}}, "model.spec", "model file not found: missing.pt2"),
        ({"model": {"spec": "zoo:nope"}}, "model.spec", "unknown zoo model 'nope'"),
        ({"model": {"spec": "no_such_pkg.mod:make"}}, "model.spec", "cannot import 'no_such_pkg.mod'"),
        ({"model": {"spec": "robustness.zoo:nope"}}, "model.spec", "has no attribute 'nope'"),
        ({"model": {"spec": "just-a-word"}}, "model.spec", "cannot tell what kind of model"),
        (
            {"model": {"spec": "robustness.zoo:digits_cnn", "weights": "missing.safetensors"}},
            "model.weights",
            "weights file not found",
        ),
        ({"model": {"weights": "w.safetensors"}}, "model.weights", "cannot be combined with a zoo model"),
        ({"model": {"spec": "FILES"}}, "model.spec", "model.json not found"),  # a folder, not a model
        ({"model": {"bounds": [0, ".inf"]}}, "model.bounds.1", "finite number"),
        ({"model": {"bounds": [1, 0]}}, "model.bounds", "low < high"),
        ({"model": {"mean": [0.5], "std": [0]}}, "model.std", "std must be > 0"),
        ({"model": {"mean": [0.5], "std": [-1]}}, "model.std", "std must be > 0"),
        ({"model": {"mean": [0.5]}}, "model.std", "mean and std go together"),
        ({"model": {"mean": [0.5, 0.5], "std": [0.2]}}, "model.std", "mean has 2 values and std 1"),
        ({"model": {"std": [".nan"], "mean": [0]}}, "model.std.0", "finite number"),
        ({"model": {"device": "gpu"}}, "model.device", "unknown device 'gpu'"),
        ({"data": {"spec": "missing.npz"}}, "data.spec", "data file not found"),
        ({"data": {"spec": "FILES/no-y.npz"}}, "data.spec", "has no array 'y'"),
        ({"data": {"spec": "FILES/text.npz"}}, "data.spec", "cannot read"),
        ({"data": {"spec": "FILES/data.npz", "n_examples": 6}}, "data.n_examples", "has only 5 samples"),
        ({"data": {"n_examples": 100_000}}, "data.n_examples", "has only 359 samples"),
        ({"data": {"spec": "builtin:digitz"}}, "data.spec", "unknown built-in data"),
        ({"data": {"seed": 10**30}}, "data.seed", "from 0 to 4294967295"),
        ({"seed": -1}, "seed", "from 0 to 4294967295"),
        ({"threat": {"eps": [0.1, ".inf"]}}, "threat.eps.1", "finite number"),
        ({"watermark": {"key": "missing-key.json"}}, "watermark.key", "watermark key file not found"),
        ({"watermark": {"key": "FILES"}}, "watermark.key", "is a folder"),
        ({"gates": {"max_drop": 0.1, "baseline": "FILES"}}, "gates.baseline", "is a folder"),
        ({"gates": {"max_drop": 0.1, "baseline": "FILES/a-file"}}, "gates.baseline", "not a results.json"),
        ({"output": {"dir": "FILES/a-file"}}, "output.dir", "is a file, not a folder"),
        ({"output": {"dir": "FILES/a-file/sub"}}, "output.dir", "a-file is a file"),
    ],
)
def test_validate_finds_what_the_audit_would_stop_on(capsys, monkeypatch, files, sections, field, needle):
    cfg = json.loads(json.dumps(config(files, **sections)).replace("FILES", str(files)))
    text = yaml.safe_dump(cfg).replace("'.inf'", ".inf").replace("'.nan'", ".nan")
    monkeypatch.chdir(files)  # relative paths in a config are relative to the working folder
    code, _, err = validate(capsys, write(files, text))
    assert_named_error(code, err, f"{field}:", needle)


def test_validate_refuses_an_output_folder_that_cannot_be_written(capsys, monkeypatch, tmp_path):
    path = write(tmp_path, config(tmp_path, output={"dir": str(tmp_path / "locked" / "run")}))
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as a read-only folder (even for root)
    code, _, err = validate(capsys, path)
    assert_named_error(code, err, "output.dir:", f"{tmp_path} is not writable")


def test_validate_runs_no_code_from_a_model_folder(capsys, tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "evil-model"
    folder.mkdir()
    card = {"architecture": {"factory": "pathlib:Path.touch", "kwargs": {"self": str(marker)}}}
    (folder / "model.json").write_text(json.dumps(card))
    validate(capsys, write(tmp_path, config(tmp_path, model={"spec": str(folder)})))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# Item 9: duplicate eps


@pytest.mark.parametrize(
    "grid, named",
    [
        ([0.1, 0.1], "eps 0.1 and 0.1 "),
        ([0.1, 0.10000000001], "eps 0.1 and 0.10000000001 "),
        ([0.2, 0.1000001, 0.1], "eps 0.1 and 0.1000001 "),  # equal at six significant digits
    ],
)
def test_duplicate_eps_are_an_error_naming_both(tmp_path, grid, named):
    with pytest.raises(ThreatModelError) as info:
        check_eps(grid)
    assert named in str(info.value) and info.value.field == "eps"
    with pytest.raises(ConfigError) as info:
        parse_config(config(tmp_path, threat={"eps": grid}))
    assert info.value.field == "threat.eps" and "same radius" in str(info.value)
    with pytest.raises(ConfigError) as info:
        apply_overrides(parse_config(config(tmp_path)), eps=grid)  # robustness audit --eps
    assert info.value.field == "threat.eps"


def test_close_but_distinct_eps_are_kept():
    assert check_eps([8 / 255, 0.0313726, 0.03137]) == (0.03137, 8 / 255, 0.0313726)
