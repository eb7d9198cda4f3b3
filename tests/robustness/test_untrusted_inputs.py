"""Untrusted model files, model folders, data files and watermark keys.

The security tests show that no code ran: each payload would create a marker file, and the
marker is checked to be absent without ``--trust-model`` and present with it (so the test would
catch the hole if it came back).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from defenses.watermark import KeyFileError, WatermarkKey, generate_labels, load_key, verify
from defenses.watermark import key as watermark_key
from robustness import zoo
from robustness.cli import main
from robustness.core import data as data_module
from robustness.core.data import load_data
from robustness.core.errors import DataError, ModelError
from robustness.core.model import SAFE_FORMATS, load_model
from robustness.core.registry import Registry

DIGITS_ARGS = ["--data", "builtin:digits", "--device", "cpu", "--json"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_paragraph(err: str, *needles: str) -> None:
    assert err.startswith("robustness ") and ": error: " in err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


# ---------------------------------------------------------------------------------------
# 1. torch.export archives with pickled entries


class _Payload:
    """Unpickles to ``tensor`` after creating ``marker``: what an attacker's weight would do."""

    def __init__(self, marker: Path, tensor: torch.Tensor) -> None:
        self.marker, self.tensor = marker, tensor

    def __reduce__(self):
        buf = io.BytesIO()
        torch.save(self.tensor, buf)
        value = f"__import__('torch').load(__import__('io').BytesIO({buf.getvalue()!r}), weights_only=True)"
        if isinstance(self.tensor, nn.Parameter):  # the exported program wants its weights as parameters
            value = f"__import__('torch').nn.Parameter({value})"
        return (eval, (f"(__import__('pathlib').Path({str(self.marker)!r}).touch(), {value})[1]",))


@pytest.fixture(scope="module")
def plain_export(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "plain.pt2"
    batch = torch.export.Dim("batch")
    program = torch.export.export(_tiny_net(), (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a zip, passing each member's (name, bytes) through ``edit`` (None drops it)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            out = edit(info.filename, zin.read(info.filename))
            if out is not None:
                zout.writestr(info.filename, out)
    return dst


def _evil_weights(src: Path, dst: Path, marker: Path) -> Path:
    """The export with its first weight replaced by a pickle that creates ``marker``."""
    with zipfile.ZipFile(src) as z:
        cfg_name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(z.read(cfg_name))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    weight = dict(_tiny_net().named_parameters())[fqn]
    payload = io.BytesIO()
    torch.save(_Payload(marker, weight), payload)

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith(f"data/weights/{meta['path_name']}"):
            return payload.getvalue()
        if name == cfg_name:
            return json.dumps(config).encode()
        return data

    return _rewrite(src, dst, edit)


def test_plain_export_loads_without_the_flag(capsys, plain_export):
    code, out, err = run_cli(capsys, "evaluate", "--model", str(plain_export), *DIGITS_ARGS)
    assert code == 0, err
    assert json.loads(out)["n"] == 359


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])  # .pt: the loader is chosen from the contents
def test_export_with_a_pickled_weight_runs_nothing(capsys, tmp_path, plain_export, suffix):
    marker = tmp_path / "ran"
    evil = _evil_weights(plain_export, tmp_path / f"evil{suffix}", marker)
    code, out, err = run_cli(capsys, "evaluate", "--model", str(evil), *DIGITS_ARGS)
    assert code == 2 and out == ""
    one_paragraph(err, f"evil{suffix}", "data/weights/weight_0", "pickled", "--trust-model")
    assert not marker.exists()
    # The payload is real: trusting the file runs it, and the model then loads and evaluates.
    code, out, err = run_cli(capsys, "evaluate", "--model", str(evil), *DIGITS_ARGS, "--trust-model")
    assert marker.exists()
    assert code == 0, err
    assert json.loads(out)["n"] == 359


def test_export_with_pickled_sample_inputs_runs_nothing(tmp_path, plain_export):
    # torch reads the sample inputs with weights_only=True but falls back to a full unpickle.
    marker = tmp_path / "ran"
    payload = io.BytesIO()
    torch.save(_Payload(marker, torch.zeros(1)), payload)
    evil = _rewrite(
        plain_export,
        tmp_path / "inputs.pt2",
        lambda name, data: payload.getvalue() if name.endswith("data/sample_inputs/model.pt") else data,
    )
    with pytest.raises(ModelError, match="sample_inputs/model.pt' is pickled data") as e:
        load_model(str(evil), device="cpu")
    assert "--trust-model" in str(e.value)
    assert not marker.exists()


def test_export_with_native_code_or_pickled_constants_is_refused(tmp_path, plain_export):
    native = _rewrite(plain_export, tmp_path / "aoti.pt2", lambda name, data: data)
    with zipfile.ZipFile(native, "a") as z:
        z.writestr("plain/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(ModelError, match="AOTInductor compiled code"):
        load_model(str(native), device="cpu")

    def opaque(name: str, data: bytes) -> bytes:
        if name.endswith("model_constants_config.json"):
            return json.dumps({"config": {"c": {"path_name": "opaque_obj_0", "use_pickle": False}}}).encode()
        return data

    with pytest.raises(ModelError, match=r"opaque_obj_0' \(constant 'c'\) is a pickled object"):
        load_model(str(_rewrite(plain_export, tmp_path / "opaque.pt2", opaque)), device="cpu")


def test_refusal_messages_do_not_call_every_export_safe():
    assert ".pt2) with plain tensor weights" in SAFE_FORMATS


# ---------------------------------------------------------------------------------------
# 2. model folders naming factories


def _folder(tmp_path: Path, architecture: dict, name: str = "folder") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in zoo.DigitsCNN().state_dict().items()}, str(folder / "w.safetensors")
    )
    card = {"architecture": architecture, "weights": "w.safetensors", "num_classes": 10}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_folder_naming_a_command_runs_nothing(capsys, tmp_path):
    marker = tmp_path / "ran"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    folder = _folder(tmp_path, {"factory": "subprocess:run", "kwargs": {"args": command}})
    code, out, err = run_cli(capsys, "evaluate", "--model", str(folder), *DIGITS_ARGS)
    assert code == 2 and out == ""
    one_paragraph(
        err, "'subprocess:run'", "not a built-in architecture", "--trust-model", "robustness harden"
    )
    assert not marker.exists()
    # With the flag the card's factory is called: the command runs (then fails: not a module).
    code, _, err = run_cli(capsys, "evaluate", "--model", str(folder), *DIGITS_ARGS, "--trust-model")
    assert marker.exists()
    assert code == 2 and "CompletedProcess, not a torch.nn.Module" in err


def test_folder_factory_is_refused_before_its_module_is_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "rb_untrusted_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef make(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_untrusted_mod", raising=False)
    folder = _folder(tmp_path, {"factory": "rb_untrusted_mod:make", "kwargs": {}})
    with pytest.raises(ModelError, match="'rb_untrusted_mod:make', which is not a built-in") as e:
        load_model(str(folder), device="cpu")
    assert e.value.field == "model" and "--trust-model" in e.value.fix
    assert not marker.exists() and "rb_untrusted_mod" not in sys.modules
    monkeypatch.delitem(sys.modules, "rb_untrusted_mod", raising=False)


@pytest.mark.parametrize(
    "architecture",
    [
        {"factory": "zoo:digits-cnn"},  # what 'robustness harden --model zoo:digits-cnn' writes
        {"factory": "zoo:digits-cnn", "kwargs": {}},
        {"factory": "robustness.zoo:digits_cnn", "kwargs": {}},  # harden --model robustness.zoo:digits_cnn
    ],
)
def test_folders_of_builtin_architectures_load_untrusted(tmp_path, architecture):
    m = load_model(str(_folder(tmp_path, architecture)), device="cpu")
    assert m.num_classes == 10 and m.logits(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_folder_written_by_harden_loads_untrusted(tmp_path, digits_model):
    from defenses import artifacts

    folder = tmp_path / "hardened"
    folder.mkdir()
    artifacts.write_weights(folder, digits_model.module)
    artifacts.write_card(folder, {"architecture": {"factory": "zoo:digits-cnn"}, "num_classes": 10})
    m = load_model(str(folder), device="cpu")
    assert m.sha256() == digits_model.sha256()


def test_plugin_registered_architecture_loads_untrusted(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ARCHITECTURES", Registry("architecture", error=ModelError, field="model"))
    zoo.register_architecture(
        "tiny-plugin-net", lambda hidden=8: nn.Sequential(nn.Flatten(), nn.Linear(64, hidden))
    )
    folder = tmp_path / "plugin"
    folder.mkdir()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 12))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    arch = {"factory": "zoo:tiny-plugin-net", "kwargs": {"hidden": 12}}
    (folder / "model.json").write_text(json.dumps({"architecture": arch}))
    assert load_model(str(folder), device="cpu").logits(torch.zeros(1, 1, 8, 8)).shape == (1, 12)
    with pytest.raises(ValueError, match="already taken"):
        zoo.register_architecture("digits-cnn", zoo.digits_cnn)


def test_factory_named_by_the_user_stays_allowed():
    # A factory on the command line or in the audit config is the user's own choice.
    assert isinstance(load_model("robustness.zoo:DigitsCNN", device="cpu").module, zoo.DigitsCNN)


def test_folder_weights_must_match_the_card(tmp_path, digits_model):
    from defenses import artifacts

    folder = tmp_path / "hardened"
    folder.mkdir()
    artifacts.write_weights(folder, digits_model.module)
    artifacts.write_card(folder, {"architecture": {"factory": "zoo:digits-cnn"}})
    save_file(
        {k: v.contiguous() * 0 for k, v in digits_model.module.state_dict().items()},
        str(folder / "model.safetensors"),
    )
    with pytest.raises(ModelError, match="does not match the hash recorded in"):
        load_model(str(folder), device="cpu")
    card = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**card, "weights": "../elsewhere.safetensors"}))
    with pytest.raises(ModelError, match="not a file in the folder"):
        load_model(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------
# 6. damaged zip members


def _flip_byte_in(path: Path, member_suffix: str) -> str:
    """Flip one byte inside the stored payload of the first member ending with ``member_suffix``."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(member_suffix) and i.file_size >= 8)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    return info.filename


def test_damaged_torchscript_is_refused_before_evaluating(capsys, tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(_tiny_net()), str(path))
    member = _flip_byte_in(path, "data/0")
    code, out, err = run_cli(capsys, "evaluate", "--model", str(path), *DIGITS_ARGS)
    assert code == 2 and out == ""
    one_paragraph(err, "net.pt", member, "CRC")


def test_damaged_export_is_refused(tmp_path, plain_export):
    path = shutil.copy(plain_export, tmp_path / "damaged.pt2")
    member = _flip_byte_in(Path(path), "data/weights/weight_0")
    with pytest.raises(ModelError, match=f"its member '{member}' does not match the checksum"):
        load_model(str(path), device="cpu")


def test_damaged_torch_save_files_are_refused(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(_tiny_net(), whole)
    member = _flip_byte_in(whole, "data/0")
    with pytest.raises(ModelError, match=f"'{member}' does not match the checksum") as e:
        load_model(str(whole), device="cpu", trust_model=True)
    assert e.value.field == "model"
    weights = tmp_path / "state.pt"
    torch.save(zoo.DigitsCNN().state_dict(), weights)
    member = _flip_byte_in(weights, "data/0")
    with pytest.raises(ModelError, match=f"'{member}' does not match the checksum") as e:
        load_model("robustness.zoo:digits_cnn", weights=str(weights), device="cpu")
    assert e.value.field == "weights"


# ---------------------------------------------------------------------------------------
# 7. resource bombs: watermark keys and .npz files


def _key_dict(input_shape: list[int], n: int = 100) -> dict:
    d = WatermarkKey.create(
        input_shape=(1, 8, 8), bounds=(0.0, 1.0), num_classes=10, n_triggers=n, seed=3
    ).to_dict()
    return {**d, "input_shape": input_shape}


@pytest.fixture
def forbid_triggers(monkeypatch):
    """Call it to fail the test if any trigger set is generated from then on."""

    def refuse(*args, **kwargs):
        raise AssertionError("triggers were generated before the key was checked")

    return lambda: monkeypatch.setattr(watermark_key, "generate_triggers", refuse)


def test_key_declaring_huge_inputs_is_refused_before_generating(
    capsys, tmp_path, digits_model, forbid_triggers
):
    key = tmp_path / "big.json"
    key.write_text(json.dumps(_key_dict([1, 4096, 4096])))
    assert key.stat().st_size < 1000
    forbid_triggers()
    code, out, err = run_cli(
        capsys, "watermark", "verify", "--model", "zoo:digits-cnn", "--device", "cpu", "--key", str(key)
    )
    assert code == 2 and out == ""
    one_paragraph(err, "input_shape [1, 4096, 4096]", "MAX_TRIGGER_VALUES")


def test_key_is_checked_against_the_model_before_generating(tmp_path, digits_model, forbid_triggers):
    d = _key_dict([1, 1024, 1024], n=10)  # within the size limits, but not this model's inputs
    d["labels"] = [int(v) for v in generate_labels(3, 10, 10)]
    d["n_triggers"] = 10
    path = tmp_path / "mid.json"
    path.write_text(json.dumps(d))
    forbid_triggers()
    key = load_key(path)  # a key this large is not regenerated when read
    with pytest.raises(
        KeyFileError, match=r"does not accept the key's trigger inputs of shape \[1, 1024, 1024\]"
    ):
        verify(digits_model, key)


def test_dry_run_accepts_the_models_own_shape_only(digits_model):
    scripted = load_model(torch.jit.script(zoo.DigitsCNN().eval()), device="cpu")
    for model in (digits_model, scripted):
        assert watermark_key._dry_run_error(model, (1, 8, 8)) is None
        assert watermark_key._dry_run_error(model, (3, 8, 8)) is not None
        assert watermark_key._dry_run_error(model, (1, 4096, 4096)) is not None  # costs no memory


def test_key_with_too_many_triggers_is_refused(tmp_path, forbid_triggers, monkeypatch):
    path = tmp_path / "many.json"
    path.write_text(json.dumps(_key_dict([1, 8, 8])))
    monkeypatch.setattr(watermark_key, "MAX_TRIGGERS", 50)
    forbid_triggers()
    with pytest.raises(KeyFileError, match="100 triggers, over the limit of 50"):
        load_key(path)


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "NPZ_RATIO_MIN_BYTES", 2**20)  # so a 4 MB test file counts
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, x=np.zeros((16384, 1, 8, 8), np.float32), y=np.zeros(16384, np.int64))
    assert path.stat().st_size < 100_000
    with pytest.raises(
        DataError, match=r"array 'x' .* over the limit of 100 times \(robustness.core.data.NPZ_MAX_RATIO\)"
    ) as e:
        load_data(str(path))
    assert e.value.field == "data.x"


def test_npz_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = _npz(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.arange(4))
    monkeypatch.setattr(data_module, "NPZ_MAX_MEMBER_BYTES", 512)
    with pytest.raises(
        DataError,
        match=r"array 'x' .* over the limit of 512 bytes \(robustness.core.data.NPZ_MAX_MEMBER_BYTES\)",
    ):
        load_data(path)


def test_npz_reads_only_the_arrays_it_needs(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "NPZ_RATIO_MIN_BYTES", 2**20)
    path = tmp_path / "extra.npz"
    x = np.random.RandomState(0).rand(4, 1, 8, 8).astype(np.float32)
    np.savez_compressed(path, x=x, y=np.arange(4), junk=np.zeros(2**20, np.float32))
    ds = load_data(str(path))  # 'junk' would be refused as a bomb if it were read
    assert ds.x.shape == (4, 1, 8, 8)


def test_npz_header_declaring_more_than_the_member_holds(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 1, 8, 8)}
    )
    buf.write(b"\0" * 64)
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue())
        y = io.BytesIO()
        np.save(y, np.arange(4))
        z.writestr("y.npy", y.getvalue())
    with pytest.raises(DataError, match=r"declares shape \(10000000, 1, 8, 8\) \(2441.4 MB\)"):
        load_data(str(path))


# ---------------------------------------------------------------------------------------
# 8. string and structured arrays; a model with too few outputs


@pytest.mark.parametrize(
    "arrays, needle, field",
    [
        (dict(x=np.zeros((2, 1, 8, 8), np.float32), y=np.array(["cat", "dog"])), "y holds strings", "data.y"),
        (
            dict(x=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), y=np.arange(2)),
            "x holds structured records",
            "data.x",
        ),
        (dict(x=np.array([["a"], ["b"]]), y=np.arange(2)), "x holds strings", "data.x"),
    ],
)
def test_string_and_structured_arrays_are_data_errors(capsys, tmp_path, arrays, needle, field):
    path = _npz(tmp_path / "s.npz", **arrays)
    with pytest.raises(DataError, match=needle) as e:
        load_data(path)
    assert e.value.field == field
    code, out, err = run_cli(
        capsys, "evaluate", "--model", "zoo:digits-cnn", "--data", path, "--device", "cpu"
    )
    assert code == 2 and out == ""
    one_paragraph(err, needle)


def test_string_ids_are_still_fine(tmp_path):
    path = _npz(
        tmp_path / "ids.npz", x=np.zeros((2, 1, 8, 8), np.float32), y=np.arange(2), ids=np.array(["a", "b"])
    )
    assert load_data(path).ids == ["a", "b"]


def test_too_few_outputs_is_the_models_problem(tmp_path):
    with pytest.raises(ModelError, match="the model has 3 outputs but the labels go up to 9") as e:
        load_data("builtin:digits", model_outputs=3)
    assert e.value.field == "model"
    assert load_data("builtin:digits", model_outputs=12).num_classes == 12
    with pytest.raises(DataError, match="labels span 0..9"):  # a bound on the data stays the data's
        load_data("builtin:digits", num_classes=3)


def test_audit_names_a_model_with_too_few_outputs(tmp_path):
    from robustness.audit import run_audit

    torch.manual_seed(0)
    three = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    config = {
        "model": {"spec": "three", "device": "cpu"},
        "data": {"spec": "builtin:digits", "n_examples": 20},
        "threat": {"norm": "linf", "eps": [0.1]},
        "attacks": [{"name": "pgd", "params": {"steps": 2}}],
        "output": {"dir": str(tmp_path / "out"), "formats": ["json"]},
    }
    with pytest.raises(ModelError, match="the model has 3 outputs but the labels go up to 9") as e:
        run_audit(config, model=three, quiet=True)
    assert e.value.field == "model"
    assert not (tmp_path / "out" / "results.json").exists()
