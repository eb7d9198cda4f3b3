"""Image folders (``folder:PATH``): layout, pixels, resizing, errors, the CLI, class names in reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from robustness.cli import main
from robustness.core.data import DATA_SCHEMES, load_data, open_data
from robustness.core.errors import DataError


def independent_pixels(path: Path, size: int | None = None, mode: str = "RGB") -> np.ndarray:
    """C x H x W floats of one image, by plain PIL and numpy: torchvision's Resize + CenterCrop."""
    img = Image.open(path).convert(mode)
    if size is not None:
        w, h = img.size
        new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        if new != (w, h):
            img = img.resize(new, Image.BILINEAR)
        w, h = img.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
    a = np.asarray(img).astype(np.float32) / np.float32(255.0)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def independent_folder(root: Path, size: int | None = None, mode: str = "RGB"):
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [
        (f, c)
        for c, name in enumerate(classes)
        for f in sorted((root / name).iterdir())
        if f.suffix in (".png", ".jpg")
    ]
    x = np.stack([independent_pixels(f, size, mode) for f, _ in files])
    return x, np.array([c for _, c in files]), [f.relative_to(root).as_posix() for f, _ in files], classes


def test_scheme_is_registered():
    assert "folder" in DATA_SCHEMES.names()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_pixels_labels_ids_and_class_names_match_plain_pil(image_folder, mode):
    root = image_folder(4, classes=("b_dog", "a_cat", "c_eel"))
    (root / "a_cat" / "README.txt").write_text("not an image")
    ds = load_data(f"folder:{root}", image_mode=mode)
    x, y, ids, classes = independent_folder(root, mode=mode)
    assert classes == ["a_cat", "b_dog", "c_eel"]  # class index = sorted folder names
    assert torch.equal(ds.x, torch.from_numpy(x)) and ds.y.tolist() == y.tolist() and ds.ids == ids
    assert ds.x.shape == (12, 1 if mode == "L" else 3, 12, 12)
    assert ds.meta["class_names"] == classes and ds.meta["skipped_files"] == 1
    assert ds.num_classes == 3


def test_image_size_resizes_the_shorter_side_and_crops_the_centre(image_folder):
    root = image_folder(3, sizes=((20, 14), (9, 17), (16, 16)), suffix=".jpg")
    ds = load_data(f"folder:{root}", image_size=10)
    x, _, _, _ = independent_folder(root, size=10)
    assert ds.x.shape == (9, 3, 10, 10)
    assert torch.equal(ds.x, torch.from_numpy(x))


def test_subset_reads_the_same_samples_as_the_whole(image_folder):
    root = image_folder(5)
    whole = load_data(f"folder:{root}")
    part = load_data(f"folder:{root}", n_examples=6, seed=3)
    index = [whole.ids.index(i) for i in part.ids]
    assert torch.equal(part.x, whole.x[index]) and part.y.tolist() == whole.y[index].tolist()
    # the stream draws the same subset
    assert open_data(f"folder:{root}", n_examples=6, seed=3).ids == part.ids


def test_mixed_sizes_without_image_size_name_the_file(image_folder):
    root = image_folder(2, sizes=((12, 12), (12, 10)))
    with pytest.raises(DataError) as err:
        load_data(f"folder:{root}")
    assert err.value.field == "data.image_size"
    assert "cat/img001.png is 12x10" in err.value.message and "--image-size" in err.value.fix


def test_unreadable_image_is_named(image_folder):
    root = image_folder(2)
    (root / "dog" / "img001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match="dog/img001.png"):
        load_data(f"folder:{root}")
    # with image_size the headers are not read first: the error comes when the image is decoded
    with pytest.raises(DataError, match="cannot read the image .*dog/img001.png"):
        load_data(f"folder:{root}", image_size=8)


@pytest.mark.parametrize(
    "layout, needle",
    [
        ("missing", "does not exist"),
        ("flat", "has no sub-folders"),
        ("empty_class", "holds no image"),
    ],
)
def test_bad_layouts_are_named(tmp_path, layout, needle):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
        Image.new("RGB", (4, 4)).save(root / "a.png")
    if layout == "empty_class":
        (root / "cat").mkdir()
        (root / "cat" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=needle):
        load_data(f"folder:{root}")


def test_options_are_checked_and_refused_where_they_do_not_apply(image_folder):
    root = image_folder(1)
    with pytest.raises(DataError, match="image_mode must be one of RGB, L"):
        load_data(f"folder:{root}", image_mode="CMYK")
    with pytest.raises(DataError, match="image_size must be a positive integer"):
        load_data(f"folder:{root}", image_size=0)
    with pytest.raises(DataError, match="apply to image folders") as err:
        load_data("builtin:digits", image_size=8)
    assert err.value.field == "data.image_size"
    with pytest.raises(DataError, match="only passed to a factory"):
        load_data(f"folder:{root}", args={"root": "x"})


def test_cli_evaluate_on_a_folder_matches_plain_pil_and_numpy(image_folder, image_models, tmp_path, capsys):
    root = image_folder(5, sizes=((16, 13), (12, 15)))
    net = image_models.make(num_classes=3, side=12)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    argv = [
        "evaluate",
        "--model",
        "rb_image_models:make",
        "--model-arg",
        "num_classes=3",
        "--model-arg",
        "side=12",
    ]
    argv += ["--weights", str(tmp_path / "w.safetensors"), "--data", f"folder:{root}", "--image-size", "12"]
    code = main([*argv, "--device", "cpu", "--batch-size", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads(out)
    x, y, _, classes = independent_folder(root, size=12)
    w = net[1].weight.detach().numpy().astype(np.float64)
    b = net[1].bias.detach().numpy().astype(np.float64)
    pred = (x.reshape(len(x), -1).astype(np.float64) @ w.T + b).argmax(1)
    assert res["n"] == 15 and res["accuracy"] == float((pred == y).mean())
    assert res["class_names"] == classes == ["cat", "dog", "eel"]
    # without --image-size the mixed sizes are refused, naming the flag
    assert main([*argv[:-2], "--device", "cpu"]) == 2
    assert "--image-size" in capsys.readouterr().err


def test_folder_and_cifar_files_of_the_same_images_give_the_same_accuracy(tmp_path, image_models, capsys):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    labels = np.array([i % 3 for i in range(12)], dtype=np.uint8)
    names = ["airplane", "automobile", "bird"]
    for i, (img, label) in enumerate(zip(pixels, labels)):
        (tmp_path / "f" / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "f" / names[label] / f"{i:02d}.png")
    records = np.concatenate([labels[:, None], pixels.transpose(0, 3, 1, 2).reshape(12, -1)], axis=1)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "test_batch.bin").write_bytes(records.astype(np.uint8).tobytes())
    net = image_models.make(num_classes=10, side=32)
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    base = [
        "evaluate",
        "--model",
        "rb_image_models:make",
        "--model-arg",
        "num_classes=10",
        "--model-arg",
        "side=32",
    ]
    base += ["--weights", str(tmp_path / "w.safetensors"), "--device", "cpu", "--json"]
    results = {}
    for kind, spec in (("folder", f"folder:{tmp_path / 'f'}"), ("cifar", f"cifar10:{tmp_path / 'c'}")):
        assert main([*base, "--data", spec]) == 0
        results[kind] = json.loads(capsys.readouterr().out)
    w = net[1].weight.detach().numpy().astype(np.float64)
    b = net[1].bias.detach().numpy().astype(np.float64)
    x = pixels.transpose(0, 3, 1, 2).reshape(12, -1).astype(np.float64) / 255.0
    expected = float(((x @ w.T + b).argmax(1) == labels).mean())
    assert results["folder"]["accuracy"] == results["cifar"]["accuracy"] == expected


def test_validate_checks_the_layout_without_decoding(image_folder, tmp_path, capsys):
    import yaml

    root = image_folder(1)
    (root / "dog" / "img000.png").write_bytes(b"not decoded by validate")
    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": f"folder:{root}", "image_size": 8, "image_mode": "L"},
        "threat": {"norm": "linf", "eps": [0.03]},
        "output": {"dir": str(tmp_path / "out"), "formats": ["json"]},
    }
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    cfg["data"] = {"spec": "builtin:digits", "image_size": 8}
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.image_size" in err and "apply to image folders" in err


def test_config_keys_and_overrides():
    from robustness.config import apply_overrides, parse_config

    cfg = parse_config(
        {
            "model": {"spec": "zoo:digits-cnn"},
            "data": {"spec": "folder:/x", "image_size": 32, "image_mode": "L"},
            "threat": {"eps": 0.1},
        }
    )
    assert cfg.data.load_options() == {"args": None, "image_size": 32, "image_mode": "L", "workers": None}
    cfg = apply_overrides(cfg, image_size=64, data_args={"split": "val"})
    assert cfg.data.image_size == 64 and cfg.data.args == {"split": "val"}


def test_report_per_class_heat_map_uses_class_names():
    from reports import as_results
    from reports.pdf import _named_classes, render_pdf_bytes

    raw = json.loads((Path(__file__).parents[1] / "reports" / "data" / "results.json").read_text())
    names = [f"class {chr(65 + i)}" for i in range(int(raw["model"]["num_classes"]) - 1)]  # one short
    raw["data"]["class_names"] = names
    res = as_results(raw)
    assert res.data.class_names == names  # results.json keeps them
    heat = _named_classes(res, names)
    keys = sorted(res.clean.per_class_accuracy, key=int)
    assert heat.rows == [*names, keys[-1]]  # a class beyond the names keeps its index
    assert heat.columns == ["clean", *[f"eps {r.eps:g}" for r in res.robust]]
    assert heat.values[0][0] == res.clean.per_class_accuracy["0"]
    assert heat.values[1][1] == res.robust[0].per_class_accuracy["1"]
    assert render_pdf_bytes(res).startswith(b"%PDF")


def test_html_per_class_table_and_picker_use_class_names(tmp_path):
    from reports import as_results, html

    raw = json.loads((Path(__file__).parents[1] / "reports" / "data" / "results.json").read_text())
    raw["data"]["class_names"] = [f"kind{i}" for i in range(int(raw["model"]["num_classes"]))]
    page = html.render(as_results(raw), tmp_path / "report.html").read_text()
    assert "kind3 (3)" in page and '<option value="3">kind3 (3)</option>' in page
