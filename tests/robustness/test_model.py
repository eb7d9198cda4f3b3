"""Model loading (every spec kind), the wrapper's mode/weight handling, and output validation."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from robustness.core.errors import ModelError, RobustnessError
from robustness.core.model import ModelUnderTest, load_model, resolve_device

# A tiny importable module: factories for the factory spec, and classes that a pickled
# whole-module file refers to (unpickling needs them importable).
TINY_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, hidden=16, num_classes=10):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.drop = nn.Dropout(0.5)
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))))

    def make():
        return TinyNet()

    def make_wide():
        return TinyNet(hidden=32)

    def not_a_module():
        return 42

    def broken():
        raise RuntimeError("factory exploded")

    NOT_CALLABLE = 3
    """
)


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """Import ``rb_tiny_models`` from a temporary folder on sys.path."""
    (tmp_path / "rb_tiny_models.py").write_text(TINY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_tiny_models", raising=False)
    import rb_tiny_models

    yield rb_tiny_models
    sys.modules.pop("rb_tiny_models", None)


@pytest.fixture
def trained_tiny(tiny):
    """A TinyNet with non-default weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(1)
    net = tiny.TinyNet()
    net.train()
    with torch.no_grad():
        net(torch.rand(32, 1, 8, 8))  # moves the running statistics away from their defaults
    return net.eval()


@pytest.fixture
def x():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _message(excinfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------------------------------
# zoo


def test_zoo_model(digits_model):
    assert digits_model.spec == "zoo:digits-cnn"
    assert digits_model.bounds == (0.0, 1.0)
    assert digits_model.num_classes == 10
    assert digits_model.device == torch.device("cpu")
    assert digits_model.n_parameters == 151_306
    assert digits_model.metadata["zoo"] == "digits-cnn"
    assert len(digits_model.sha256()) == 64
    info = digits_model.info()
    assert info["n_parameters"] == 151_306 and info["spec"] == "zoo:digits-cnn"


def test_zoo_refuses_weights():
    with pytest.raises(ModelError, match="cannot be combined with a zoo model"):
        load_model("zoo:digits-cnn", weights="w.safetensors")


def test_unknown_zoo_model():
    with pytest.raises(ModelError) as e:
        load_model("zoo:resnet-9000")
    assert "unknown zoo model 'resnet-9000'" in _message(e)
    assert "zoo:digits-cnn" in _message(e)


# ---------------------------------------------------------------------------------------
# torch.export


def _export(net, x, path, dynamic=True):
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=shapes), str(path))
    return str(path)


def test_exported_program(tmp_path, trained_tiny, x):
    path = _export(trained_tiny, x, tmp_path / "tiny.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = load_model(path, device="cpu")
    expected = trained_tiny(x)
    torch.testing.assert_close(m(x), expected)
    torch.testing.assert_close(m.logits(x, batch_size=4), expected)
    m.validate(x)
    assert m.num_classes == 10
    assert len(m.sha256()) == 64  # BatchNorm's 0-d num_batches_tracked buffer is hashable
    with pytest.raises(NotImplementedError):
        m.module.eval()  # exported graph modules refuse .eval(); the wrapper must not call it


def test_exported_program_with_fixed_batch(tmp_path, trained_tiny, x):
    path = _export(trained_tiny, x[:4], tmp_path / "fixed.pt2", dynamic=False)
    with pytest.warns(UserWarning, match="fixed batch size of 4"):
        m = load_model(path, device="cpu")
    expected = trained_tiny(x)
    for bs in (1, 3, 4, 6):  # split and padded to the exported batch size
        torch.testing.assert_close(m.logits(x, batch_size=bs), expected)
    xg = x.clone().requires_grad_(True)
    with m.evaluating():
        m(xg)[:, 0].sum().backward()
    ref = x.clone().requires_grad_(True)
    trained_tiny(ref)[:, 0].sum().backward()
    torch.testing.assert_close(xg.grad, ref.grad)


def test_exported_program_mode_and_freeze_are_restored(tmp_path, trained_tiny, x):
    m = load_model(_export(trained_tiny, x, tmp_path / "tiny.pt2"), device="cpu")
    for mod in m.net.modules():
        mod.training = True
    params = list(m.net.parameters())
    assert params and all(p.requires_grad for p in params)
    with m.evaluating():
        assert not any(mod.training for mod in m.net.modules())
        assert not any(p.requires_grad for p in m.net.parameters())
        torch.testing.assert_close(m(x), trained_tiny(x))
    assert all(mod.training for mod in m.net.modules())
    assert all(p.requires_grad for p in m.net.parameters())


def test_exported_in_training_mode_is_refused(tmp_path, trained_tiny, x):
    path = _export(trained_tiny.train(), x, tmp_path / "train.pt2")
    with pytest.raises(ModelError) as e:
        load_model(path)
    msg = _message(e)
    assert "exported in training mode" in msg
    assert "batch norm" in msg and "dropout" in msg
    assert "model.eval()" in msg


def test_corrupt_pt2(tmp_path):
    path = tmp_path / "bad.pt2"
    path.write_bytes(b"definitely not a zip archive")
    with pytest.raises(ModelError, match="cannot load .* as a torch.export program"):
        load_model(str(path))


# ---------------------------------------------------------------------------------------
# TorchScript


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # torch 2.10+ deprecates TorchScript; users still ship it
@pytest.mark.parametrize("suffix", [".pt", ".ts"])
def test_torchscript(tmp_path, trained_tiny, x, suffix):
    path = tmp_path / f"tiny{suffix}"
    torch.jit.save(torch.jit.script(trained_tiny), str(path))
    m = load_model(str(path), device="cpu")
    assert isinstance(m.module, torch.jit.ScriptModule)
    torch.testing.assert_close(m.logits(x), trained_tiny(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_eval_mode_during_evaluation(tmp_path, trained_tiny, x):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(trained_tiny), str(path))
    m = load_model(str(path), device="cpu")
    expected = trained_tiny(x)
    m.module.train()
    # logits() evaluates in eval mode (running statistics, no dropout) and restores train mode
    torch.testing.assert_close(m.logits(x), expected)
    torch.testing.assert_close(m.logits(x), expected)
    assert m.module.training and m.module.drop.training and m.module.bn.training
    assert not torch.allclose(m(x), m(x))  # the module's own call is left in train mode: dropout


# ---------------------------------------------------------------------------------------
# factory + weights


def test_factory_without_weights(tiny, x):
    m = load_model("rb_tiny_models:make", device="cpu")
    assert isinstance(m.module, tiny.TinyNet)
    assert m.logits(x).shape == (6, 10)


@pytest.mark.parametrize("fmt", ["safetensors", "state-dict-pt", "wrapped-state-dict-pt"])
def test_factory_with_weights(tmp_path, trained_tiny, x, fmt):
    state = trained_tiny.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "state-dict-pt":
        path = tmp_path / "w.pt"
        torch.save(state, path)
    else:  # a training checkpoint {"state_dict": ...}
        path = tmp_path / "ckpt.pt"
        torch.save({"state_dict": state, "epoch": 3}, path)
    m = load_model("rb_tiny_models:make", weights=str(path), device="cpu")
    torch.testing.assert_close(m.logits(x), trained_tiny(x))
    assert m.sha256() == ModelUnderTest(trained_tiny, device="cpu").sha256()


def test_weights_that_do_not_fit(tmp_path, trained_tiny):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained_tiny.state_dict().items()}, str(path))
    with pytest.raises(ModelError) as e:
        load_model("rb_tiny_models:make_wide", weights=str(path))
    assert e.value.field == "weights"
    assert "the weights do not fit the architecture" in _message(e)
    assert "size mismatch: fc.1.weight is (16, 256) in the file but (32, 256) in the model" in _message(e)


def test_weights_with_missing_keys(tmp_path, trained_tiny):
    path = tmp_path / "partial.pt"
    state = trained_tiny.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, path)
    with pytest.raises(ModelError) as e:
        load_model("rb_tiny_models:make", weights=str(path))
    assert "missing from the file: fc.1.weight, fc.1.bias, fc.3.weight and 1 more" in _message(e)
    prefixed = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, prefixed)
    with pytest.raises(ModelError) as e:
        load_model("rb_tiny_models:make", weights=str(prefixed))
    assert "not in the model: module.conv.weight" in _message(e)
    assert "saved from DataParallel" in _message(e)


def test_weights_file_missing(tiny, tmp_path):
    with pytest.raises(ModelError, match="weights file not found") as e:
        load_model("rb_tiny_models:make", weights=str(tmp_path / "nope.safetensors"))
    assert e.value.field == "weights"


def test_weights_corrupt_safetensors(tiny, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(ModelError, match="corrupt or not safetensors"):
        load_model("rb_tiny_models:make", weights=str(path))


def test_weights_pickled_module_is_not_a_state_dict(tmp_path, trained_tiny):
    path = tmp_path / "whole.pt"
    torch.save(trained_tiny, path)
    # weights are always loaded with weights_only=True: a pickled module is refused, never unpickled
    with pytest.raises(ModelError, match="is not a plain state dict") as e:
        load_model("rb_tiny_models:make", weights=str(path))
    assert "model.state_dict()" in _message(e)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_weights_only_with_factory(tmp_path, trained_tiny, x):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(trained_tiny), str(path))
    with pytest.raises(ModelError, match="only used with a factory spec"):
        load_model(str(path), weights="w.safetensors")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("rb_no_such_module_xyz:make", "cannot import 'rb_no_such_module_xyz'"),
        ("rb_tiny_models:missing", "has no attribute 'missing'"),
        ("rb_tiny_models:NOT_CALLABLE", "is not callable"),
        ("rb_tiny_models:not_a_module", "returned int, not a torch.nn.Module"),
        ("rb_tiny_models:broken", "RuntimeError: factory exploded"),
        ("rb_tiny_models:", "is not of the form 'package.module:callable'"),
    ],
)
def test_bad_factories(tiny, spec, expected):
    with pytest.raises(ModelError) as e:
        load_model(spec)
    assert expected in _message(e)
    assert e.value.field == "model"


# ---------------------------------------------------------------------------------------
# pickled files, state dicts given as models, odd files


def test_pickled_module_refused_without_trust(tmp_path, trained_tiny):
    path = tmp_path / "whole.pt"
    torch.save(trained_tiny, path)
    with pytest.raises(ModelError) as e:
        load_model(str(path))
    msg = _message(e)
    assert "unpickling can run arbitrary code" in msg
    assert "--trust-model" in msg
    for safe in ("TorchScript", "torch.export", ".safetensors"):
        assert safe in msg


def test_legacy_pickled_module_refused_without_trust(tmp_path, trained_tiny):
    path = tmp_path / "legacy.pth"
    torch.save(trained_tiny, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelError, match="arbitrary code"):
        load_model(str(path))


def test_pickled_module_loads_with_trust(tmp_path, trained_tiny, tiny, x):
    path = tmp_path / "whole.pt"
    torch.save(trained_tiny, path)
    m = load_model(str(path), trust_model=True, device="cpu")
    assert isinstance(m.module, tiny.TinyNet)
    torch.testing.assert_close(m.logits(x), trained_tiny(x))


def test_pickled_non_module_with_trust(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"model": object.__new__(_Opaque)}, path)
    with pytest.raises(ModelError, match="holds dict, not an nn.Module"):
        load_model(str(path), trust_model=True)


class _Opaque:
    pass


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_state_dict_given_as_model(tmp_path, trained_tiny, suffix):
    path = tmp_path / f"sd{suffix}"
    torch.save(trained_tiny.state_dict(), path)
    with pytest.raises(ModelError) as e:
        load_model(str(path), trust_model=True)  # trust changes nothing: it is simply not a model
    msg = _message(e)
    assert "holds a state dict, not a model" in msg
    assert "--weights" in msg and "package.module:callable" in msg


def test_safetensors_given_as_model(tmp_path, trained_tiny):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained_tiny.state_dict().items()}, str(path))
    with pytest.raises(ModelError, match="holds weights only \\(safetensors\\), not a model"):
        load_model(str(path))


def test_unknown_file_format(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x04onnx-ish protobuf bytes")
    with pytest.raises(ModelError, match="is not a TorchScript, torch.export or torch.save file"):
        load_model(str(path))


@pytest.mark.parametrize("name", ["missing.pt", "missing.pt2", "missing.ts", "sub/missing.pth"])
def test_missing_file(tmp_path, name):
    with pytest.raises(ModelError) as e:
        load_model(str(tmp_path / name))
    assert "file not found" in _message(e)
    assert e.value.field == "model"


def test_unrecognised_spec():
    with pytest.raises(ModelError, match="cannot tell what kind of model 'resnet'"):
        load_model("resnet")


# ---------------------------------------------------------------------------------------
# model folders (model.json + weights)


def test_model_folder(tmp_path, digits_model, digits_small):
    folder = tmp_path / "run"
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in digits_model.module.state_dict().items()},
        str(folder / "w.safetensors"),
    )
    card = {
        "architecture": {"factory": "zoo:digits-cnn", "kwargs": {}},
        "weights": "w.safetensors",
        "bounds": [0.0, 1.0],
        "mean": [0.5],
        "std": [0.25],
        "num_classes": 10,
    }
    (folder / "model.json").write_text(json.dumps(card))
    m = load_model(str(folder), device="cpu")
    assert (m.mean, m.std, m.num_classes) == ([0.5], [0.25], 10)
    x = digits_small.x[:5]
    torch.testing.assert_close(m.logits(x), digits_model.logits((x - 0.5) / 0.25))
    with pytest.raises(ModelError, match="cannot be combined with a model folder"):
        load_model(str(folder), weights="w.safetensors")
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="model.json is malformed"):
        load_model(str(folder))
    (folder / "model.json").unlink()
    with pytest.raises(ModelError, match="has no model.json"):
        load_model(str(folder))


# ---------------------------------------------------------------------------------------
# devices, bounds, normalisation


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "banana"])
def test_bad_device(device):
    with pytest.raises(ModelError) as e:
        resolve_device(device)
    assert e.value.field == "device"
    assert repr(device) in _message(e)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda(digits_model):
    with pytest.raises(ModelError, match="no CUDA device is available"):
        load_model("zoo:digits-cnn", device="cuda")
    with pytest.raises(ModelError, match="no CUDA device is available"):
        resolve_device("cuda:0")


@pytest.mark.gpu
def test_cuda_index_out_of_range():
    with pytest.raises(ModelError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_auto_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")


def test_normalisation_inside_the_model(trained_tiny, x):
    mean, std = [0.3], [0.2]
    m = load_model(trained_tiny, mean=mean, std=std, device="cpu")
    # attacks see input space: m(x) is the network applied to the normalised input
    torch.testing.assert_close(m.logits(x), trained_tiny((x - 0.3) / 0.2))
    assert not torch.allclose(m.logits(x), trained_tiny(x))
    assert m.info()["mean"] == mean and m.info()["std"] == std
    # gradients flow through the normalisation to the input
    xg = x.clone().requires_grad_(True)
    with m.evaluating():
        m(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_normalisation_per_channel():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2, 4))
    m = ModelUnderTest(net, mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.125], device="cpu")
    x = torch.rand(2, 3, 2, 2)
    ref = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 0.125]).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(m(x), net(ref))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"mean": [0.5]}, "mean and std must be given together"),
        ({"std": [0.5]}, "mean and std must be given together"),
        ({"mean": [0.5], "std": [0.0]}, "std must be > 0"),
        ({"bounds": (1.0, 0.0)}, "low < high"),
        ({"bounds": (0.0,)}, "bounds must be two numbers"),
    ],
)
def test_bad_wrapper_options(trained_tiny, kwargs, expected):
    with pytest.raises(RobustnessError, match=expected):
        load_model(trained_tiny, device="cpu", **kwargs)


def test_bounds_recorded(trained_tiny):
    m = load_model(trained_tiny, bounds=(-1, 1), device="cpu")
    assert m.bounds == (-1.0, 1.0)
    assert load_model(trained_tiny, device="cpu").bounds == (0.0, 1.0)


def test_not_a_module():
    with pytest.raises(ModelError, match="expected a torch.nn.Module, got int"):
        ModelUnderTest(3)


# ---------------------------------------------------------------------------------------
# evaluation mode, frozen weights, batching


def test_eval_mode_and_frozen_weights_restored(trained_tiny, x):
    m = load_model(trained_tiny, device="cpu")
    trained_tiny.train()
    trained_tiny.fc[1].weight.requires_grad_(False)  # a user's partly frozen model
    before = {n: p.requires_grad for n, p in trained_tiny.named_parameters()}
    with m.evaluating():
        assert not any(mod.training for mod in trained_tiny.modules())
        assert not any(p.requires_grad for p in trained_tiny.parameters())
        torch.testing.assert_close(m(x), m(x))  # dropout is off
    assert all(mod.training for mod in trained_tiny.modules())
    assert {n: p.requires_grad for n, p in trained_tiny.named_parameters()} == before
    # restored on errors too
    with pytest.raises(RuntimeError), m.evaluating():
        raise RuntimeError("attack failed")
    assert all(mod.training for mod in trained_tiny.modules())
    assert {n: p.requires_grad for n, p in trained_tiny.named_parameters()} == before


def test_evaluating_without_freeze(trained_tiny):
    m = load_model(trained_tiny, device="cpu")
    with m.evaluating(freeze=False):
        assert all(p.requires_grad for p in trained_tiny.parameters())
        assert not trained_tiny.training


def test_logits_in_eval_mode_and_mode_restored(trained_tiny, x):
    m = load_model(trained_tiny, device="cpu")
    trained_tiny.train()
    out = m.logits(x)
    assert trained_tiny.training and trained_tiny.bn.training
    trained_tiny.eval()
    torch.testing.assert_close(out, trained_tiny(x))


def test_batched_prediction_equals_unbatched(digits_model, digits_test):
    x = digits_test.x[:101]
    full = digits_model.logits(x, batch_size=1000)
    for bs in (1, 7, 64):
        torch.testing.assert_close(digits_model.logits(x, batch_size=bs), full, rtol=1e-5, atol=1e-5)
    assert torch.equal(digits_model.predict(x, batch_size=13), full.argmax(1))
    assert not digits_model.logits(x[:3]).requires_grad


def test_logits_of_no_inputs(digits_model):
    assert digits_model.logits(torch.empty(0, 1, 8, 8)).shape == (0, 10)


# ---------------------------------------------------------------------------------------
# validation


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.lin(x.flatten(1)))


def test_validate_good_model(x):
    m = ModelUnderTest(_Fn(lambda z: z), device="cpu")
    assert m.num_classes is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.validate(x)
    assert m.num_classes == 10 and not m.outputs_probabilities


def test_validate_non_finite(x):
    m = ModelUnderTest(_Fn(lambda z: z.masked_fill(z > 0, float("nan"))), device="cpu")
    with pytest.raises(ModelError, match="NaN or infinite"):
        m.validate(x)
    m = ModelUnderTest(_Fn(lambda z: z.clamp_min(0) * float("inf")), device="cpu")
    with pytest.raises(ModelError, match="NaN or infinite"):
        m.validate(x)


@pytest.mark.parametrize(
    "fn, expected",
    [
        (lambda z: z.unsqueeze(1), r"shape \(6, 1, 10\) for 6 inputs, expected \(N, num_classes\)"),
        (lambda z: z.sum(1), r"shape \(6,\) for 6 inputs"),
        (lambda z: z.reshape(-1, 5), r"shape \(12, 5\) for 6 inputs"),
        (lambda z: z[:, :1], "1 score per input"),
        (lambda z: (z, z), "returned tuple, not a tensor"),
    ],
)
def test_validate_wrong_output_shape(x, fn, expected):
    m = ModelUnderTest(_Fn(fn), device="cpu")
    with pytest.raises(ModelError, match=expected):
        m.validate(x)


def test_validate_wrong_input_shape():
    m = ModelUnderTest(_Fn(lambda z: z), device="cpu")
    with pytest.raises(ModelError, match=r"failed on inputs of shape \(3, 4, 4\)"):
        m.validate(torch.rand(2, 3, 4, 4))


def test_validate_class_count_mismatch(x):
    m = ModelUnderTest(_Fn(lambda z: z), device="cpu", num_classes=7)
    with pytest.raises(ModelError, match="returned 10 classes, expected 7"):
        m.validate(x)


def test_validate_warns_on_probabilities(x):
    m = ModelUnderTest(_Fn(lambda z: z.softmax(1)), spec="softmaxed", device="cpu")
    with pytest.warns(UserWarning, match="look like probabilities") as rec:
        m.validate(x)
    assert m.outputs_probabilities is True
    assert "softmaxed" in str(rec[0].message) and "Gradient attacks are weakened" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.validate(x)  # validated once only


def test_log_probabilities_are_logits(x):
    m = ModelUnderTest(_Fn(lambda z: z.log_softmax(1)), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.validate(x)
    assert not m.outputs_probabilities


# ---------------------------------------------------------------------------------------
# identity


def test_sha256_tracks_weights(trained_tiny):
    a = ModelUnderTest(trained_tiny, device="cpu")
    h = a.sha256()
    assert h == a.sha256()
    with torch.no_grad():
        trained_tiny.fc[1].bias[0] += 1e-3
    assert a.sha256() != h
    assert a.n_parameters == sum(p.numel() for p in trained_tiny.parameters())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_compiled_and_channels_last_models_give_the_eager_results(digits_model, digits_small):
    """--compile (torch.compile, inductor) and --channels-last change speed, never results or the
    model's identity. Compiling the small CNN takes about 30 s on 2 cores."""
    from attacks.registry import get_attack

    x, y = digits_small.x[:40], digits_small.y[:40]
    eager = get_attack("pgd", steps=5)(digits_model, x, y, eps=0.1, seed=0)
    for kw in ({"compile": True}, {"channels_last": True}):
        m = load_model("zoo:digits-cnn", device="cpu", **kw)
        assert m.info()["compiled"] == bool(kw.get("compile"))
        assert m.info()["channels_last"] == bool(kw.get("channels_last"))
        assert m.sha256() == digits_model.sha256()
        res = get_attack("pgd", steps=5)(m, x, y, eps=0.1, seed=0)
        assert torch.equal(res.success, eager.success), kw
        torch.testing.assert_close(res.x_adv, eager.x_adv, atol=1e-5, rtol=0)
    assert 0 < eager.robust_accuracy < 1


# ---------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@pytest.mark.gpu
def test_zoo_model_on_cuda(digits_model, digits_small):
    m = load_model("zoo:digits-cnn", device="cuda", mean=[0.0], std=[1.0])
    x = digits_small.x
    out = m.logits(x, batch_size=33)
    assert out.device.type == "cuda" and m.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), digits_model.logits(x), rtol=1e-3, atol=1e-3)
    assert torch.equal(m.predict(x).cpu(), digits_model.predict(x))
    xg = x[:8].cuda().requires_grad_(True)
    with m.evaluating():
        m(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    assert all(p.grad is None for p in m.module.parameters())
    assert m.sha256() == digits_model.sha256()  # the hash does not depend on the device


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["export", "export-fixed-batch", "torchscript"])
def test_saved_models_on_cuda(tmp_path, trained_tiny, x, kind):
    if kind == "torchscript":
        path = str(tmp_path / "tiny.pt")
        torch.jit.save(torch.jit.script(trained_tiny), path)
    else:
        path = _export(trained_tiny, x[:4], tmp_path / "tiny.pt2", dynamic=kind == "export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = load_model(path, device="cuda")
    out = m.logits(x, batch_size=5)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), trained_tiny(x), rtol=1e-3, atol=1e-3)
