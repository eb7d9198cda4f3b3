"""Data factories: ``--data pkg.mod:fn`` with ``--data-arg``/``data.args``, returning arrays or a
map-style ``torch.utils.data.Dataset`` (streamed like a folder); the forms refused, clearly."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from robustness.cli import main
from robustness.core.data import load_data, open_data
from robustness.core.errors import DataError

FACTORIES = textwrap.dedent(
    '''
    from pathlib import Path

    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import Dataset, IterableDataset


    class Images(Dataset):
        """The images of a class-per-folder tree, read the way a user's own dataset would."""

        def __init__(self, root):
            root = Path(root)
            self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
            self.items = [
                (f, c) for c, name in enumerate(self.classes) for f in sorted((root / name).glob("*.png"))
            ]

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            path, label = self.items[i]
            a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
            return torch.from_numpy(a).permute(2, 0, 1), torch.tensor(label)


    def images(root):
        return Images(root)


    def arrays(n=6, value=0.5, classes=3):
        x = torch.full((n, 1, 4, 4), float(value))
        return x, torch.arange(n) % classes


    class Items(Dataset):
        def __init__(self, make, n=4):
            self.make, self.n = make, n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return self.make(i)


    def pil_images():
        return Items(lambda i: (Image.new("RGB", (4, 4)), 0))


    def string_labels():
        return Items(lambda i: (torch.zeros(3, 4, 4), "cat"))


    def integer_pixels():
        return Items(lambda i: (torch.zeros(3, 4, 4, dtype=torch.uint8), 1))


    def failing(bad=2):
        def make(i):
            if i == bad:
                raise KeyError("no such record")
            return torch.zeros(3, 4, 4), 0

        return Items(make)


    def mixed_shapes():
        return Items(lambda i: (torch.zeros(3, 4 + (i >= 2), 4), 0))


    def nan_at(i_bad=3):
        return Items(lambda i: (torch.full((3, 4, 4), float("nan") if i == i_bad else 0.5), 0), n=6)


    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(3, 4, 4), 0


    def iterable():
        return Stream()


    def number():
        return 42
    '''
)


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "rb_data_factories.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import rb_data_factories

    return importlib.reload(rb_data_factories)


def test_data_args_reach_the_factory(factories):
    ds = load_data("rb_data_factories:arrays", args={"n": 9, "value": 0.25})
    assert len(ds) == 9 and float(ds.x.max()) == 0.25 and ds.y.tolist()[:4] == [0, 1, 2, 0]
    with pytest.raises(DataError, match="calling rb_data_factories:arrays failed: TypeError") as err:
        load_data("rb_data_factories:arrays", args={"size": 3})
    assert "--data-arg" in err.value.fix
    with pytest.raises(DataError, match="data arguments .* only passed to a factory"):
        load_data("builtin:digits", args={"n": 3})


def test_a_torch_dataset_is_streamed_and_matches_the_folder(factories, image_folder):
    root = image_folder(4)
    spec = "rb_data_factories:images"
    stream = open_data(spec, args={"root": str(root)})
    assert type(stream).__name__ == "MapStream" and len(stream) == 12
    assert stream.class_names == ["cat", "dog", "eel"]  # a torchvision-style .classes is kept
    from_factory = load_data(spec, args={"root": str(root)})
    from_folder = load_data(f"folder:{root}")
    assert torch.equal(from_factory.x, from_folder.x) and torch.equal(from_factory.y, from_folder.y)
    assert from_factory.ids == [str(i) for i in range(12)]
    batches = list(stream.batches(5))
    assert [b.x.shape[0] for b in batches] == [5, 5, 2]
    assert torch.equal(torch.cat([b.x for b in batches]), from_folder.x)


def test_cli_evaluate_factory_dataset_equals_folder(factories, image_folder, image_models, tmp_path, capsys):
    root = image_folder(5)
    net = image_models.make(num_classes=3, side=12)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    base = ["evaluate", "--model", "rb_image_models:make", "--weights", str(tmp_path / "w.safetensors")]
    base += ["--device", "cpu", "--batch-size", "4", "--json"]
    assert main([*base, "--data", f"folder:{root}"]) == 0
    folder = json.loads(capsys.readouterr().out)
    argv = [*base, "--data", "rb_data_factories:images", "--data-arg", f"root={root}"]
    assert main(argv) == 0, capsys.readouterr().err
    factory = json.loads(capsys.readouterr().out)
    assert factory["n"] == folder["n"] == 15
    assert factory["accuracy"] == folder["accuracy"] and factory["confusion"] == folder["confusion"]


@pytest.mark.parametrize(
    "name, field, needle",
    [
        ("number", "data", "returned int"),
        ("iterable", "data", "returned Stream"),
        ("pil_images", "data.x", "sample 0 of rb_data_factories:pil_images: the input is of type Image"),
        ("integer_pixels", "data.x", "the input is a torch.uint8 tensor"),
        ("string_labels", "data.y", "the label is str cat"),
        ("failing", "data", "reading sample 2 of rb_data_factories:failing failed: KeyError"),
        ("mixed_shapes", "data.x", "sample 2 has shape (3, 5, 4) but sample 0 has (3, 4, 4)"),
        ("nan_at", "data.x", "1 inputs contain NaN or inf (first: sample 3)"),
    ],
)
def test_forms_refused_with_a_clear_error(factories, name, field, needle):
    with pytest.raises(DataError) as err:
        load_data(f"rb_data_factories:{name}")
    assert err.value.field == field and needle in err.value.message
    if name == "number":
        assert "torch.utils.data.Dataset" in err.value.fix and "(x, y)" in err.value.fix


def test_cli_data_arg_parsing_and_errors(factories, capsys):
    argv = ["evaluate", "--model", "zoo:digits-cnn", "--device", "cpu"]
    assert main([*argv, "--data", "rb_data_factories:arrays", "--data-arg", "nope"]) == 2
    assert "--data-arg expects KEY=VALUE" in capsys.readouterr().err
    assert main([*argv, "--data", "builtin:digits", "--data-arg", "n=3"]) == 2
    assert "data.args: data arguments (n) are only passed to a factory" in capsys.readouterr().err


def test_config_data_args_are_checked_by_validate(factories, tmp_path, capsys):
    import yaml

    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": "rb_data_factories:arrays", "args": {"n": 4}},
        "threat": {"norm": "linf", "eps": [0.03]},
        "output": {"dir": str(tmp_path / "out"), "formats": ["json"]},
    }
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    cfg["data"]["spec"] = "builtin:digits"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 2
    assert "data.args" in capsys.readouterr().err
