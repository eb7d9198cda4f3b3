"""The official CIFAR-10 / CIFAR-100 files as data: ``cifar10:PATH`` and ``cifar100:PATH``.

Reads the binary version (``test_batch.bin``, ``data_batch_N.bin``; CIFAR-100 ``test.bin`` and
``train.bin``) and the python version (``test_batch``, ``data_batch_N``; CIFAR-100 ``test`` and
``train``) from a local folder; nothing is downloaded. ``PATH`` is the folder holding the files
or its parent (which holds ``cifar-10-batches-bin``, ``cifar-10-batches-py``,
``cifar-100-binary`` or ``cifar-100-python``); ``cifar10:PATH:train`` is the training split.

The binary version is read lazily: each file is memory-mapped (``numpy.memmap``) and a batch
reads only its own records, turned into floats when it is read (:class:`ArrayStream`); the
labels, a byte per record, are read once up front. So ``evaluate`` and ``attack`` hold only the
batches in flight, whatever the split's size; ``load_data`` reads the stream into memory.

The python version is read whole into memory: each batch is a pickle, which cannot be mapped or
read in parts. It is read by :class:`DataUnpickler`, which builds dicts, lists, strings, bytes,
numbers and plain numeric numpy arrays (the batches hold their pixels as one) and refuses every
other global, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustness.core.data import DATA_SCHEMES, DataOptions, Dataset

try:  # numpy 2 moved it (and keeps numpy.core as a deprecated alias); pickles may name either
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
from robustness.core.errors import DataError
from robustness.core.stream import ArrayStream, DataStream, TensorStream

PIXELS = 3 * 32 * 32
# A batch file larger than this is not a CIFAR file (the largest official one, CIFAR-100's
# train.bin, is 154 MB); refused before it is read or mapped.
MAX_FILE_BYTES = 512 * 2**20
# Records whose labels are read at a time (12.6 MB of a CIFAR-10 file).
LABEL_CHUNK = 4096


@dataclass(frozen=True)
class Layout:
    """Where one CIFAR variant keeps its files, in each version."""

    scheme: str
    num_classes: int
    folders: tuple[str, str]  # (binary, python) folder names of the official archives
    binary: dict[str, tuple[str, ...]]
    python: dict[str, tuple[str, ...]]
    label_bytes: int  # bytes before the pixels of a binary record; the last one is the label
    label_key: str  # the python version's label list
    meta_binary: str
    meta_python: str
    meta_key: str


CIFAR10 = Layout(
    scheme="cifar10",
    num_classes=10,
    folders=("cifar-10-batches-bin", "cifar-10-batches-py"),
    binary={"test": ("test_batch.bin",), "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6))},
    python={"test": ("test_batch",), "train": tuple(f"data_batch_{i}" for i in range(1, 6))},
    label_bytes=1,
    label_key="labels",
    meta_binary="batches.meta.txt",
    meta_python="batches.meta",
    meta_key="label_names",
)
CIFAR100 = Layout(
    scheme="cifar100",
    num_classes=100,
    folders=("cifar-100-binary", "cifar-100-python"),
    binary={"test": ("test.bin",), "train": ("train.bin",)},
    python={"test": ("test",), "train": ("train",)},
    label_bytes=2,  # coarse label, then fine label: the fine one is used
    label_key="fine_labels",
    meta_binary="fine_label_names.txt",
    meta_python="meta",
    meta_key="fine_label_names",
)


class DataUnpickler(pickle.Unpickler):
    """Builds plain data only: containers, strings, bytes, numbers and numeric numpy arrays.

    Containers and scalars need no globals; a numpy array needs a few (by pickle protocol), each
    admitted here in a form that cannot build anything else (no object arrays, no ndarray
    subclasses, bytes from latin-1 text only). Any other
    global, the way a pickle names code to run, is refused before it is looked up.
    """

    def __init__(self, file: Any, *, source: Path) -> None:
        super().__init__(file, encoding="bytes")  # the official files are Python 2 pickles
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            return _reconstruct
        if (module, name) in (("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")):
            return _frombuffer  # how numpy pickles an array under protocol 5
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes  # how Python 3 writes bytes under protocol 2
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        raise DataError(
            f"{self.source} is a pickle that names {module}.{name}; only plain data is read from CIFAR "
            "python batches, so it was refused and nothing in it ran",
            field="data",
            fix="Use the official CIFAR files (or their binary version, cifar-10-batches-bin); a file "
            "that names code is not a CIFAR batch.",
        )


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only plain numpy arrays are read")
    return _np_reconstruct(np.ndarray, shape, _plain_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return np.frombuffer(buf, dtype=_plain_dtype(dtype)).reshape(shape, order=order)


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only latin-1 text is turned into bytes")
    return text.encode("latin1")


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # an object array would unpickle its items through the same door
        raise pickle.UnpicklingError("object arrays are not read")
    return dtype


def load_pickle(path: Path) -> Any:
    """Plain data from a pickle file, refusing any pickle that names code (see DataUnpickler)."""
    raw = _read(path)
    try:
        return DataUnpickler(io.BytesIO(raw), source=path).load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or hostile file, in any of pickle's ways
        raise DataError(
            f"{path} is not a readable CIFAR python batch: {type(exc).__name__}: {exc}",
            field="data",
            fix="Use the official CIFAR files, unaltered.",
        ) from None


def _read(path: Path) -> bytes:
    _size(path)
    return path.read_bytes()


def _size(path: Path) -> int:
    """The size of a batch or meta file that is there and not larger than any CIFAR file."""
    if not path.is_file():
        raise DataError(
            f"{path} is missing",
            field="data",
            fix="Point at the folder of the official CIFAR files (or its parent), as extracted from the archive.",
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"{path} is {size} bytes, more than any CIFAR batch file",
            field="data",
            fix="Point at the official CIFAR files.",
        )
    return size


def find_folder(root: Path, layout: Layout) -> tuple[Path, str]:
    """The folder holding the files and its version ('binary' or 'python'): ``root`` or a child."""
    for folder in (root, root / layout.folders[0], root / layout.folders[1]):
        if (folder / layout.binary["test"][0]).is_file() or (folder / layout.binary["train"][0]).is_file():
            return folder, "binary"
        if (folder / layout.python["test"][0]).is_file() or (folder / layout.python["train"][0]).is_file():
            return folder, "python"
    wanted = f"{layout.binary['test'][0]} or {layout.python['test'][0]}"
    raise DataError(
        f"{root} holds no {layout.scheme.upper()} files ({wanted}, directly or in "
        f"{' or '.join(layout.folders)})",
        field="data",
        fix=f"Give {layout.scheme}:PATH with PATH the extracted official archive's folder or its parent.",
    )


def map_binary(path: Path, layout: Layout) -> np.memmap:
    """The records of one binary batch file, memory-mapped (nothing read yet): an (N, record)
    uint8 array, each record the label bytes then the 3072 pixels."""
    size = _size(path)
    record = layout.label_bytes + PIXELS
    if not size or size % record:
        raise DataError(
            f"{path} is {size} bytes, not a whole number of {record}-byte records (truncated or not "
            f"a {layout.scheme.upper()} binary batch)",
            field="data",
            fix="Extract the official archive again; the file is damaged or of another dataset.",
        )
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // record, record))


def binary_labels(path: Path, layout: Layout, n: int) -> np.ndarray:
    """The labels (N,) of one binary batch file of ``n`` records, read in chunks of records by plain
    reads (the pages of a map would stay in the process; these go through the page cache only)."""
    record = layout.label_bytes + PIXELS
    labels = np.empty(n, dtype=np.int64)
    with open(path, "rb") as fh:
        for start in range(0, n, LABEL_CHUNK):
            count = min(LABEL_CHUNK, n - start)
            rows = np.fromfile(fh, dtype=np.uint8, count=count * record)
            if rows.size != count * record:  # the file shrank since it was measured
                raise DataError(
                    f"{path} ended after {start * record + rows.size} bytes while being read",
                    field="data",
                    fix="Extract the official archive again, and leave the files alone while they are read.",
                )
            labels[start : start + count] = rows.reshape(count, record)[:, layout.label_bytes - 1]
    return labels


@dataclass(frozen=True)
class Records:
    """A block of binary records as inputs: the pixels after ``label_bytes`` label bytes, as
    (N, 3, 32, 32) float32 ``pixel / 255``, the same arithmetic as the python version's."""

    label_bytes: int

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return _to_floats(rows[:, self.label_bytes :])


def _to_floats(pixels: np.ndarray) -> np.ndarray:
    # the files store each image as 1024 red, 1024 green, 1024 blue bytes: (N, 3, 32, 32) as is
    x = pixels.reshape(-1, 3, 32, 32).astype(np.float32)
    x /= np.float32(255.0)
    return x


def read_python(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 3072) uint8 and labels (N,) from one python-version batch (a pickled dict)."""
    batch = _str_keys(load_pickle(path))
    if not isinstance(batch, dict) or "data" not in batch or layout.label_key not in batch:
        raise DataError(
            f"{path} is not a {layout.scheme.upper()} python batch (no 'data' and '{layout.label_key}')",
            field="data",
            fix="Point at the official CIFAR python-version files.",
        )
    data, labels = batch["data"], batch[layout.label_key]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != PIXELS
    ):
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(
            f"{path}: 'data' is {shape}, expected uint8 pixels of shape (N, {PIXELS})",
            field="data",
            fix="Point at the official CIFAR python-version files.",
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise DataError(
            f"{path}: {len(data)} images but the labels are not a list of {len(data)}",
            field="data",
            fix="Point at the official CIFAR python-version files.",
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(
            f"{path}: the labels are not integers", field="data", fix="Use the official files."
        ) from None
    return data, y


def _str_keys(obj: Any) -> Any:
    """A Python 2 pickle's dict, read with bytes keys, with str keys."""
    if isinstance(obj, dict):
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


def class_names(folder: Path, version: str, layout: Layout) -> list[str] | None:
    """The class names from the meta file, when present (None without one)."""
    if version == "binary":
        path = folder / layout.meta_binary
        if not path.is_file():
            return None
        names = [line.strip() for line in _read(path).decode("utf-8", "replace").splitlines() if line.strip()]
    else:
        path = folder / layout.meta_python
        if not path.is_file():
            return None
        raw = _str_keys(load_pickle(path))
        names = raw.get(layout.meta_key) if isinstance(raw, dict) else None
        if not isinstance(names, list):
            names = []
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != layout.num_classes:
        raise DataError(
            f"{path} names {len(names)} classes, expected {layout.num_classes}",
            field="data",
            fix="Use the archive's own meta file, or remove it (classes are then shown as indices).",
        )
    return names


def locate(spec: str, layout: Layout) -> tuple[Path, str, str, tuple[str, ...]]:
    """Folder, version, split and batch files of ``SCHEME:PATH[:train|:test]``; each file exists."""
    rest = spec.partition(":")[2]
    split = "test"
    for name in ("train", "test"):
        if rest.endswith(f":{name}"):
            rest, split = rest[: -len(name) - 1], name
    if not rest:
        raise DataError(
            f"{spec!r} names no folder",
            field="data",
            fix=f"Write {layout.scheme}:PATH (test split) or {layout.scheme}:PATH:train.",
        )
    folder, version = find_folder(Path(rest).expanduser(), layout)
    files = (layout.binary if version == "binary" else layout.python)[split]
    for name in files:
        if not (folder / name).is_file():
            _read(folder / name)  # the one "missing" error
    return folder, version, split, files


def open_cifar(spec: str, layout: Layout, options: DataOptions | None = None) -> DataStream:
    """``SCHEME:PATH`` or ``SCHEME:PATH:train`` / ``:test`` as a stream of floats in [0, 1]: the
    binary version memory-mapped (an :class:`ArrayStream`), the python version read whole (a
    :class:`TensorStream`)."""
    if options is not None:
        options.refuse(spec)  # neither data arguments nor image options apply to CIFAR files
    folder, version, split, files = locate(spec, layout)
    if version == "python":
        return TensorStream(_load_python(spec, layout, folder, split, files))
    maps = [map_binary(folder / name, layout) for name in files]
    labels = np.concatenate(
        [binary_labels(folder / name, layout, rows.shape[0]) for name, rows in zip(files, maps)]
    )
    _check_labels(labels, folder, layout)
    meta = _meta(folder, version, split, layout)
    meta["memory_mapped"] = True
    return ArrayStream(
        spec,
        maps,
        labels,
        _ids(layout, split, len(labels)),
        decode=Records(layout.label_bytes),
        num_classes=layout.num_classes,
        meta=meta,
    )


def load_cifar(spec: str, layout: Layout) -> Dataset:
    """``SCHEME:PATH`` or ``SCHEME:PATH:train`` / ``:test`` as a Dataset of floats in [0, 1], in memory."""
    return open_cifar(spec, layout).materialize()


def _load_python(spec: str, layout: Layout, folder: Path, split: str, files: tuple[str, ...]) -> Dataset:
    """The python version, read whole: each batch is one pickle, which cannot be mapped."""
    parts = [read_python(folder / name, layout) for name in files]
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    _check_labels(labels, folder, layout)
    x = torch.from_numpy(_to_floats(pixels))
    ids = _ids(layout, split, len(labels))
    meta = _meta(folder, "python", split, layout)
    return Dataset(x, torch.from_numpy(labels), ids, spec, layout.num_classes, meta)


def _check_labels(labels: np.ndarray, folder: Path, layout: Layout) -> None:
    bad = (labels < 0) | (labels >= layout.num_classes)
    if bad.any():
        raise DataError(
            f"{folder}: label {int(labels[bad][0])} is outside 0..{layout.num_classes - 1}",
            field="data",
            fix=f"Point at {layout.scheme.upper()} files (CIFAR-100 files are read with cifar100:).",
        )


def _meta(folder: Path, version: str, split: str, layout: Layout) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": f"{layout.scheme} {version}", "split": split}
    names = class_names(folder, version, layout)
    if names is not None:
        meta["class_names"] = names
    return meta


def _ids(layout: Layout, split: str, n: int) -> list[str]:
    return [f"{layout.scheme}-{split}-{i}" for i in range(n)]


def _scheme(layout: Layout) -> Any:
    def load(spec: str) -> Dataset:
        return load_cifar(spec, layout)

    # read batch by batch (open_source and open_data use it; load_data materializes it)
    load.open = lambda spec, options: open_cifar(spec, layout, options)  # type: ignore[attr-defined]
    # what 'robustness validate' checks without reading the (large) files: they are there
    load.check = lambda spec: locate(spec, layout)  # type: ignore[attr-defined]
    return load


DATA_SCHEMES.add("cifar10", _scheme(CIFAR10))
DATA_SCHEMES.add("cifar100", _scheme(CIFAR100))
