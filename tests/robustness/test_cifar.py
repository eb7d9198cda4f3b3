"""``cifar10:PATH`` / ``cifar100:PATH``: the official CIFAR files (binary and python versions), read safely."""

from __future__ import annotations

import json
import os
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from robustness.cli import main
from robustness.core.data import DATA_SCHEMES, load_data
from robustness.core.errors import DataError

NAMES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_batch(n: int, seed: int, classes: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        rng.integers(0, classes, n),
        rng.integers(0, 20, n),  # CIFAR-100's coarse labels
    )


def write_cifar10(root: Path, version: str, *, n: int = 4, meta: bool = True, protocol: int = 2) -> dict:
    """A tiny CIFAR-10 folder in the official layout; returns the batches written, by file name."""
    folder = root / ("cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    batches = {}
    names = ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
    for seed, name in enumerate(names):
        pixels, labels, _ = fake_batch(n, seed)
        batches[name] = (pixels, labels)
        if version == "binary":
            rows = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
            (folder / f"{name}.bin").write_bytes(rows.tobytes())
        else:
            batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": pixels}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    if meta and version == "binary":
        (folder / "batches.meta.txt").write_text("\n".join(NAMES10) + "\n\n")
    elif meta:
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [s.encode() for s in NAMES10]}))
    return batches


def expected(batches: dict, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = np.concatenate([batches[n][0] for n in names])
    labels = np.concatenate([batches[n][1] for n in names])
    return torch.from_numpy(pixels.reshape(-1, 3, 32, 32) / 255.0).float(), torch.from_numpy(labels)


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar10_test_and_train_splits(tmp_path, version):
    batches = write_cifar10(tmp_path, version)
    sub = "cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py"
    for spec in (f"cifar10:{tmp_path}", f"cifar10:{tmp_path / sub}"):  # the parent or the folder itself
        ds = load_data(spec)
        x, y = expected(batches, ["test_batch"])
        assert ds.x.dtype == torch.float32 and ds.x.shape == (4, 3, 32, 32)
        assert torch.equal(ds.x, x) and torch.equal(ds.y, y)
        assert float(ds.x.min()) >= 0.0 and float(ds.x.max()) <= 1.0
        assert ds.num_classes == 10 and ds.meta["class_names"] == NAMES10
        assert len(set(ds.ids)) == 4
    train = load_data(f"cifar10:{tmp_path}:train")
    x, y = expected(batches, [f"data_batch_{i}" for i in range(1, 6)])
    assert len(train) == 20 and torch.equal(train.x, x) and torch.equal(train.y, y)
    assert load_data(f"cifar10:{tmp_path}:train", n_examples=5).meta["class_names"] == NAMES10


def test_python_batches_of_protocol_5_load(tmp_path):
    batches = write_cifar10(tmp_path, "python", protocol=5)
    assert torch.equal(load_data(f"cifar10:{tmp_path}").y, expected(batches, ["test_batch"])[1])


def test_without_meta_there_are_no_class_names(tmp_path):
    write_cifar10(tmp_path, "binary", meta=False)
    assert "class_names" not in load_data(f"cifar10:{tmp_path}").meta


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar100_uses_fine_labels(tmp_path, version):
    pixels, fine, coarse = fake_batch(5, 7, classes=100)
    names = [f"class{i}" for i in range(100)]
    if version == "binary":
        folder = tmp_path / "cifar-100-binary"
        folder.mkdir()
        rows = np.concatenate(
            [coarse.astype(np.uint8)[:, None], fine.astype(np.uint8)[:, None], pixels], axis=1
        )
        (folder / "test.bin").write_bytes(rows.tobytes())
        (folder / "fine_label_names.txt").write_text("\n".join(names))
    else:
        folder = tmp_path / "cifar-100-python"
        folder.mkdir()
        batch = {"data": pixels, "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()}
        (folder / "test").write_bytes(pickle.dumps(batch, protocol=2))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names}))
    ds = load_data(f"cifar100:{tmp_path}")
    assert torch.equal(ds.y, torch.from_numpy(fine)) and ds.num_classes == 100
    assert torch.equal(ds.x, torch.from_numpy(pixels.reshape(-1, 3, 32, 32) / 255.0).float())
    assert ds.meta["class_names"] == names


def test_code_in_a_python_batch_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="refused and nothing in it ran") as e:
        load_data(f"cifar10:{tmp_path}")
    assert str(folder / "test_batch") in e.value.message
    assert not marker.exists()
    # the same through a meta file, and with an object array (which would unpickle its items)
    write_cifar10(tmp_path / "b", "python", meta=False)
    meta = tmp_path / "b" / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [Payload()]}))
    with pytest.raises(DataError, match="refused"):
        load_data(f"cifar10:{tmp_path / 'b'}")
    assert not marker.exists()
    obj = tmp_path / "c" / "cifar-10-batches-py"
    obj.mkdir(parents=True)
    (obj / "test_batch").write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object), "labels": [0]}))
    with pytest.raises(DataError, match="not a readable CIFAR python batch"):
        load_data(f"cifar10:{tmp_path / 'c'}")


def test_missing_folder_and_missing_batch_are_named(tmp_path):
    with pytest.raises(DataError, match="holds no CIFAR10 files"):
        load_data(f"cifar10:{tmp_path}")
    write_cifar10(tmp_path, "binary")
    gone = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    gone.unlink()
    with pytest.raises(DataError, match="data_batch_3.bin is missing"):
        load_data(f"cifar10:{tmp_path}:train")
    with pytest.raises(DataError, match="names no folder"):
        load_data("cifar10:")


def test_truncated_binary_record_is_named(tmp_path):
    write_cifar10(tmp_path, "binary")
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="not a whole number of 3073-byte records") as e:
        load_data(f"cifar10:{tmp_path}")
    assert "test_batch.bin" in e.value.message


def test_wrong_sizes_and_labels_are_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    )
    with pytest.raises(DataError, match=r"test_batch: 'data' is \(2, 100\)"):
        load_data(f"cifar10:{tmp_path}")
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}))
    with pytest.raises(DataError, match="labels are not a list of 2"):
        load_data(f"cifar10:{tmp_path}")
    (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [12]}))
    with pytest.raises(DataError, match="label 12 is outside 0..9"):
        load_data(f"cifar10:{tmp_path}")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a readable CIFAR python batch"):
        load_data(f"cifar10:{tmp_path}")


def test_meta_with_the_wrong_class_count_is_named(tmp_path):
    write_cifar10(tmp_path, "binary")
    (tmp_path / "cifar-10-batches-bin" / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match="batches.meta.txt names 2 classes, expected 10"):
        load_data(f"cifar10:{tmp_path}")


def test_schemes_are_registered():
    assert {"cifar10", "cifar100"} <= set(DATA_SCHEMES.names())


def test_cli_evaluate_matches_numpy(tmp_path, monkeypatch, capsys):
    batches = write_cifar10(tmp_path, "binary", n=12)
    (tmp_path / "rb_cifar_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def make(num_classes=10):
                torch.manual_seed(0)
                return nn.Sequential(nn.Flatten(), nn.Linear(3072, num_classes))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import rb_cifar_models

    net = rb_cifar_models.make()
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    argv = ["evaluate", "--model", "rb_cifar_models:make", "--model-arg", "num_classes=10"]
    argv += ["--weights", str(tmp_path / "w.safetensors"), "--data", f"cifar10:{tmp_path}", "--device", "cpu"]
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # independent numpy arithmetic on the same bytes
    pixels, labels = batches["test_batch"]
    w = net[1].weight.detach().numpy().astype(np.float64)
    b = net[1].bias.detach().numpy().astype(np.float64)
    pred = (pixels.astype(np.float64) / 255.0 @ w.T + b).argmax(1)
    assert json.loads(out)["accuracy"] == pytest.approx(float((pred == labels).mean()))


def test_validate_checks_the_files_without_reading_them(tmp_path, capsys):
    import yaml

    write_cifar10(tmp_path, "binary")
    cfg = {
        "model": {"spec": "zoo:digits-cnn", "device": "cpu"},
        "data": {"spec": f"cifar10:{tmp_path}:train"},
        "threat": {"norm": "linf", "eps": [0.03]},
        "output": {"dir": str(tmp_path / "out"), "formats": ["json"]},
    }
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    (tmp_path / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.spec" in err and "data_batch_5.bin is missing" in err


# -- the binary version read lazily, batch by batch (issue 14, streaming) ---------------------


def write_cifar100(root: Path, version: str, *, n: int = 5) -> dict:
    """A tiny CIFAR-100 folder (test and train) in the official layout; returns pixels and fine labels."""
    folder = root / ("cifar-100-binary" if version == "binary" else "cifar-100-python")
    folder.mkdir(parents=True)
    batches = {}
    for seed, name in enumerate(("test", "train")):
        pixels, fine, coarse = fake_batch(n + seed, 20 + seed, classes=100)
        batches[name] = (pixels, fine)
        if version == "binary":
            rows = np.concatenate(
                [coarse.astype(np.uint8)[:, None], fine.astype(np.uint8)[:, None], pixels], 1
            )
            (folder / f"{name}.bin").write_bytes(rows.tobytes())
        else:
            batch = {"data": pixels, "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


def streamed(stream, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    batches = list(stream.batches(batch_size))
    return (
        torch.cat([b.x for b in batches]),
        torch.cat([b.y for b in batches]),
        sum((b.ids for b in batches), []),
    )


@pytest.mark.parametrize("version", ["binary", "python"])
@pytest.mark.parametrize("split", ["test", "train"])
def test_streamed_batches_equal_the_whole_read(tmp_path, monkeypatch, version, split):
    from robustness.core import cifar
    from robustness.core.data import open_data
    from robustness.core.stream import ArrayStream, TensorStream

    monkeypatch.setattr(cifar, "LABEL_CHUNK", 3)  # labels read in chunks that cut the files' records
    batches = write_cifar10(tmp_path, version)
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    spec = f"cifar10:{tmp_path}" + (":train" if split == "train" else "")
    x, y = expected(batches, names)
    ids = [f"cifar10-{split}-{i}" for i in range(len(y))]
    stream = open_data(spec)
    if version == "binary":  # one map per file, nothing read into memory
        assert isinstance(stream, ArrayStream) and len(stream.parts) == len(names)
        assert all(isinstance(part, np.memmap) for part in stream.parts)
    else:  # a pickle is read whole
        assert isinstance(stream, TensorStream)
    assert stream.class_names == NAMES10 and stream.num_classes == 10
    whole = load_data(spec)
    for size in (3, 4, 64):  # batches that cross the files' boundaries, match them, hold everything
        sx, sy, sids = streamed(stream, size)
        assert sx.dtype == torch.float32 and sx.shape[1:] == (3, 32, 32)
        assert torch.equal(sx, x) and torch.equal(sy, y) and sids == ids
    assert torch.equal(whole.x, x) and torch.equal(whole.y, y) and whole.ids == ids
    assert whole.meta["class_names"] == NAMES10
    # a seeded subset: the same samples streamed as loaded, scattered over the files
    sub = open_data(spec, n_examples=3, seed=5)
    loaded = load_data(spec, n_examples=3, seed=5)
    index = [ids.index(i) for i in loaded.ids]
    sx, sy, sids = streamed(sub, 2)
    assert torch.equal(sx, x[index]) and torch.equal(sy, y[index]) and sids == loaded.ids
    assert torch.equal(loaded.x, x[index]) and torch.equal(loaded.y, y[index])


@pytest.mark.parametrize("version", ["binary", "python"])
@pytest.mark.parametrize("split", ["test", "train"])
def test_cifar100_streamed_batches_equal_the_files(tmp_path, version, split):
    from robustness.core.data import open_data

    pixels, fine = write_cifar100(tmp_path, version)[split]
    spec = f"cifar100:{tmp_path}" + (":train" if split == "train" else "")
    sx, sy, sids = streamed(open_data(spec), 4)
    assert torch.equal(sx, torch.from_numpy(pixels.reshape(-1, 3, 32, 32) / 255.0).float())
    assert torch.equal(sy, torch.from_numpy(fine)) and sids == [
        f"cifar100-{split}-{i}" for i in range(len(fine))
    ]
    assert torch.equal(load_data(spec).x, sx)


class Recorded:
    """A part of an ArrayStream that records which of its rows are read."""

    def __init__(self, array: np.ndarray, k: int, log: list) -> None:
        self.array, self.k, self.log = array, k, log
        self.shape = array.shape

    def __getitem__(self, index):
        self.log.append((self.k, index if isinstance(index, slice) else index.tolist()))
        return self.array[index]


def test_a_batch_reads_only_its_own_records(tmp_path):
    from robustness.core.data import open_data

    write_cifar10(tmp_path, "binary")  # 4 records per file, 20 in the training split
    stream = open_data(f"cifar10:{tmp_path}:train")
    log: list = []
    stream.parts = [Recorded(part, k, log) for k, part in enumerate(stream.parts)]
    batch = next(stream.batches(3, numbers=[2]))  # samples 6, 7, 8: file 1 rows 2-3, file 2 row 0
    assert log == [(1, slice(2, 4)), (2, slice(0, 1))]
    assert torch.equal(batch.x, load_data(f"cifar10:{tmp_path}:train").x[6:9])
    log.clear()
    list(stream.subset([0, 9, 17, 18]).batches(4))  # scattered: each file only at its rows
    assert log == [(0, [0]), (2, [1]), (4, [1, 2])]


def test_wrong_size_training_file_is_named(tmp_path):
    from robustness.core.data import open_data

    write_cifar10(tmp_path, "binary")
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes() + b"\0" * 7)
    for read in (open_data, load_data):
        with pytest.raises(
            DataError, match="data_batch_3.bin is 12299 bytes, not a whole number of 3073-byte"
        ):
            read(f"cifar10:{tmp_path}:train")
    path.write_bytes(b"")
    with pytest.raises(DataError, match="data_batch_3.bin is 0 bytes"):
        open_data(f"cifar10:{tmp_path}:train")
    # CIFAR-100 records (two label bytes) read as CIFAR-10 ones
    write_cifar100(tmp_path / "c100", "binary", n=4)
    (tmp_path / "c100" / "cifar-100-binary" / "test.bin").rename(tmp_path / "c100" / "test_batch.bin")
    with pytest.raises(DataError, match=r"test_batch.bin is 12296 bytes, not a whole number of 3073-byte"):
        open_data(f"cifar10:{tmp_path / 'c100'}")


def test_image_options_are_refused_for_cifar_files(tmp_path):
    write_cifar10(tmp_path, "binary")
    with pytest.raises(DataError, match="image_size apply to image folders"):
        load_data(f"cifar10:{tmp_path}", image_size=32)


MEMORY_RUN = """
import sys
from robustness.cli import main

assert main(["evaluate", "--model", "rb_mem_cifar:make", "--data", "cifar10:" + sys.argv[1] + ":train",
             "--batch-size", "256", "--device", "cpu", "--threads", "1", "--json"]) == 0
"""

MEMORY_MODEL = """
import torch
from torch import nn

def make(num_classes=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))
"""


def test_evaluate_over_20000_records_peaks_like_over_500(tmp_path, peak_memory):
    """``robustness evaluate --data cifar10:DIR:train`` over 20,000 records (246 MB as floats, 61 MB
    of files) and over 500: the peak memory of the process grows by less than an eighth of the
    floats' size. Measured: about 3 MB; reading the files whole (as before) grew it by 285 MB,
    and the maps without their pages dropped after each batch by 58 MB."""
    rng = np.random.default_rng(0)
    sizes = {"few": 500, "many": 20_000}
    for name, n in sizes.items():
        folder = tmp_path / name / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        for i in range(1, 6):
            rows = rng.integers(0, 256, (n // 5, 3073), dtype=np.uint8)
            rows[:, 0] %= 10
            (folder / f"data_batch_{i}.bin").write_bytes(rows.tobytes())
    peaks = {}
    for name, n in sizes.items():
        lines, measured = peak_memory(
            MEMORY_RUN, tmp_path / name, modules={"rb_mem_cifar": MEMORY_MODEL}, timeout=300
        )
        assert json.loads("\n".join(lines))["n"] == n
        peaks[name] = measured["peak_kb"]
    floats_mb = 20_000 * 3072 * 4 / 2**20
    grown_mb = (peaks["many"] - peaks["few"]) / 1024
    assert grown_mb < floats_mb / 8, (grown_mb, peaks)
