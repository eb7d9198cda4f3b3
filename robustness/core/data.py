"""Evaluation data: loading from a spec, validation, reproducible subsets, stable ids."""

from __future__ import annotations

import hashlib
import math
import numbers
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustness.core.errors import DataError, ModelError
from robustness.core.registry import Registry
from robustness.core.stream import ArrayStream, DataStream, MapStream, TensorStream

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

# .npz members are read only when their declared sizes are sane: a member may not hold more
# than NPZ_MAX_MEMBER_BYTES, and one larger than NPZ_RATIO_MIN_BYTES may not decompress to more
# than NPZ_MAX_RATIO times its stored size (real data compresses a few times; a bomb of zeros
# ~1000 times). Module constants, so a deployment (or a test) can change them.
NPZ_MEMBERS = ("x", "y", "ids")
NPZ_MAX_MEMBER_BYTES = 8 * 2**30
NPZ_MAX_RATIO = 100
NPZ_RATIO_MIN_BYTES = 256 * 2**20


@dataclass
class Dataset:
    """Inputs ``x`` (float32, N x ...), integer labels ``y`` (N,) and stable string ids."""

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    spec: str = "<tensors>"
    num_classes: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def sha256(self) -> str:
        """Hash of inputs and labels, so a resumed run can tell the data changed."""
        h = hashlib.sha256()
        h.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def subset(self, index: Sequence[int] | torch.Tensor) -> Dataset:
        idx = torch.as_tensor(index, dtype=torch.long)
        return Dataset(
            self.x[idx],
            self.y[idx],
            [self.ids[i] for i in idx.tolist()],
            self.spec,
            self.num_classes,
            dict(self.meta),
        )

    def info(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "n": len(self),
            "sha256": self.sha256(),
            "shape": list(self.x.shape[1:]),
            "num_classes": self.num_classes,
            **({"class_names": list(self.meta["class_names"])} if self.meta.get("class_names") else {}),
        }


IMAGE_MODES = ("RGB", "L")  # what an image folder's images are converted to (Pillow's modes)


@dataclass(frozen=True)
class DataOptions:
    """How a spec is read beyond the spec itself (config ``data.*``, CLI ``--data-arg``, ``--image-*``).

    ``args``: keyword arguments of a factory ``package.module:callable``. ``image_size``: image
    folders resize each image's shorter side to it, then crop the centre square. ``image_mode``:
    ``RGB`` (3 channels, the default) or ``L`` (grey). ``workers``: reader processes of an image
    folder (None: automatic, see ``stream.auto_workers``).
    """

    args: dict[str, Any] | None = None
    image_size: int | None = None
    image_mode: str | None = None
    workers: int | None = None

    def check(self) -> DataOptions:
        if self.args is not None and not isinstance(self.args, dict):
            raise DataError(
                f"data arguments must be a mapping of names to values, got {type(self.args).__name__}",
                field="data.args",
                fix="Give them as --data-arg KEY=VALUE or as a mapping under data.args in the config.",
            )
        size = self.image_size
        if size is not None and (
            not isinstance(size, numbers.Integral) or isinstance(size, bool) or size <= 0
        ):
            raise DataError(
                f"image_size must be a positive integer, got {size!r}",
                field="data.image_size",
                fix="Give the side in pixels of the square the images are cropped to, e.g. 224.",
            )
        if self.image_mode is not None and self.image_mode not in IMAGE_MODES:
            raise DataError(
                f"image_mode must be one of {', '.join(IMAGE_MODES)}, got {self.image_mode!r}",
                field="data.image_mode",
                fix="Use RGB (three channels) or L (grey, one channel).",
            )
        workers = self.workers
        if workers is not None and (
            not isinstance(workers, numbers.Integral) or isinstance(workers, bool) or workers < 0
        ):
            raise DataError(
                f"workers must be an integer >= 0, got {workers!r}",
                field="data.workers",
                fix="Give the number of reader processes (0 reads in the main process), or leave it out.",
            )
        return self

    def refuse(self, spec: str, *, args: bool = True, images: bool = True) -> None:
        """Refuse the options a kind of data does not take, naming the option and the kind."""
        if args and self.args:
            raise DataError(
                f"data arguments ({', '.join(sorted(self.args))}) are only passed to a factory "
                f"'package.module:callable', and {spec!r} is not one",
                field="data.args",
                fix="Drop --data-arg / data.args, or name the dataset's factory as the data.",
            )
        if images:
            given = [name for name in ("image_size", "image_mode") if getattr(self, name) is not None]
            if given:
                raise DataError(
                    f"{' and '.join(given)} apply to image folders (folder:PATH), and {spec!r} is not one",
                    field=f"data.{given[0]}",
                    fix="Drop the option, or resize the images when building the data.",
                )


def load_data(
    spec: str | Dataset,
    *,
    n_examples: int | None = None,
    seed: int = 0,
    bounds: Sequence[float] | None = (0.0, 1.0),
    num_classes: int | None = None,
    model_outputs: int | None = None,
    args: dict[str, Any] | None = None,
    image_size: int | None = None,
    image_mode: str | None = None,
    workers: int | None = None,
) -> Dataset:
    """Load and validate data from a spec, all of it in memory (see :func:`open_data` to stream it).

    Specs: ``builtin:digits`` (test split), ``builtin:digits:train``, ``cifar10:DIR`` and
    ``cifar100:DIR`` (the official files, ``:train`` for the training split), ``folder:DIR``
    (one sub-folder of images per class), ``file.npz`` (arrays ``x`` and ``y``, optional
    ``ids``), ``package.module:callable`` (called with ``args``) returning ``(x, y)``, a dict
    with ``x``/``y``(/``ids``), a :class:`Dataset` or a map-style ``torch.utils.data.Dataset`` of
    ``(input, label)`` pairs; or a :class:`Dataset`. ``n_examples`` picks a reproducible subset
    drawn with ``seed`` (kept in the original order; data read lazily reads only it).
    ``num_classes`` bounds the labels; ``model_outputs`` (the model's class count, when known)
    does too, but a label beyond it is reported as the model's problem (see
    :func:`check_labels_fit_model`). ``image_size``/``image_mode``/``workers``: see :class:`DataOptions`.
    """
    checks = {"bounds": bounds, "num_classes": num_classes, "model_outputs": model_outputs}
    options = DataOptions(args, image_size, image_mode, workers).check()
    if isinstance(spec, Dataset):
        options.refuse("a Dataset object")
        ds = validate_dataset(spec, **checks)
        return pick_subset(ds, n_examples, seed) if n_examples is not None else ds
    stream = open_source(str(spec), options)
    if isinstance(stream, TensorStream):
        # in memory already: the whole set is checked, then the subset drawn
        ds = validate_dataset(stream.dataset, **checks)
        return pick_subset(ds, n_examples, seed) if n_examples is not None else ds
    if n_examples is not None:
        stream = stream.subset(pick_index(len(stream), n_examples, seed, stream.spec))
    return validate_dataset(stream.materialize(), **checks)


def open_data(
    spec: str | Dataset,
    *,
    n_examples: int | None = None,
    seed: int = 0,
    bounds: Sequence[float] | None = (0.0, 1.0),
    num_classes: int | None = None,
    model_outputs: int | None = None,
    args: dict[str, Any] | None = None,
    image_size: int | None = None,
    image_mode: str | None = None,
    workers: int | None = None,
) -> DataStream:
    """The data of a spec as a :class:`DataStream`, read batch by batch (same specs and options as
    :func:`load_data`, the same subset for the same ``n_examples`` and ``seed``).

    Data in memory is checked whole here; data read lazily (image folders, memory-mapped
    ``.npz``, a factory's ``torch.utils.data.Dataset``) is checked batch by batch as it is read.
    """
    checks = {"bounds": bounds, "num_classes": num_classes, "model_outputs": model_outputs}
    options = DataOptions(args, image_size, image_mode, workers).check()
    if isinstance(spec, Dataset):
        options.refuse("a Dataset object")
        stream: DataStream = TensorStream(spec)
    else:
        stream = open_source(str(spec), options)
    if isinstance(stream, TensorStream):
        ds = validate_dataset(stream.dataset, **checks)
        stream = TensorStream(pick_subset(ds, n_examples, seed) if n_examples is not None else ds)
    elif n_examples is not None:
        stream = stream.subset(pick_index(len(stream), n_examples, seed, stream.spec))
    if len(stream) == 0:
        raise DataError(f"{stream.spec} is empty", field="data", fix="Give at least one sample.")
    stream.expect(**checks)
    if stream.check_up_front:
        stream.check_all()
    return stream


def pick_subset(ds: Dataset, n_examples: int, seed: int) -> Dataset:
    return ds.subset(pick_index(len(ds), n_examples, seed, ds.spec))


def pick_index(n: int, n_examples: int, seed: int, spec: str) -> torch.Tensor:
    """Positions of a reproducible subset of ``n_examples`` of ``n`` samples, in the original order."""
    if not isinstance(n_examples, numbers.Integral) or isinstance(n_examples, bool) or n_examples <= 0:
        raise DataError(
            f"n_examples must be a positive integer, got {n_examples!r}",
            field="n_examples",
            fix="Give a number of samples such as 200, or leave it out to use all.",
        )
    if n_examples > n:
        raise DataError(
            f"n_examples is {n_examples} but {spec} has only {n} samples",
            field="n_examples",
            fix=f"Use at most {n}, or leave it out to use all.",
        )
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)[: int(n_examples)].sort().values


# Data schemes: ``SCHEME:REST`` specs, each loaded by one function from the full spec. ``builtin``
# is defined below; plug-ins add theirs (image folders, dataset files) through the
# ``robustness.plugins`` entry-point group.
DATA_SCHEMES: Registry[Callable[[str], Dataset]] = Registry(
    "data scheme", entry_points="robustness.plugins", error=DataError, field="data"
)


def data_scheme(spec: str) -> Callable[[str], Dataset] | None:
    """The registered loader of a ``SCHEME:...`` spec, or None for other specs."""
    prefix, sep, _ = spec.partition(":")
    if sep and prefix and "." not in prefix and "/" not in prefix and prefix in DATA_SCHEMES:
        return DATA_SCHEMES.get(prefix)
    return None


def open_source(spec: str, options: DataOptions) -> DataStream:
    """The data a spec names, unchecked: in memory (a :class:`TensorStream`) or read lazily."""
    loader = data_scheme(spec)
    if loader is not None:
        opener = getattr(loader, "open", None)  # a scheme that reads lazily (folder:)
        if opener is not None:
            options.refuse(spec, images=False)
            return opener(spec, options)
        options.refuse(spec)
        return TensorStream(loader(spec))
    path = Path(spec)
    if path.suffix == ".npz" or path.exists():
        options.refuse(spec)
        return _open_npz(path, spec)
    if ":" in spec:
        options.refuse(spec, args=False)
        return _open_factory(spec, options.args)
    raise DataError(
        f"cannot tell what kind of data {spec!r} is",
        field="data",
        fix="Use builtin:digits, builtin:digits:train, cifar10:DIR, cifar100:DIR, folder:DIR (one sub-folder "
        "of images per class), a .npz file with arrays x and y, or a factory 'package.module:callable'.",
    )


def check_labels_fit_model(max_label: int, model_outputs: int) -> None:
    """Refuse labels the model cannot predict, as the model's problem: it has too few outputs.

    The labels are the data's ground truth; a model with fewer outputs than the largest label
    needs cannot be audited on them (its accuracy on those classes would be zero by construction).
    """
    if max_label >= model_outputs:
        raise ModelError(
            f"the model has {model_outputs} outputs but the labels go up to {max_label}, which needs "
            f"at least {max_label + 1} outputs (one per class, labels 0..{max_label})",
            field="model",
            fix=f"Audit a model with one output per class of this data, or give data whose labels are "
            f"0..{model_outputs - 1}.",
        )


def _builtin(spec: str) -> Dataset:
    parts = spec.split(":")
    name = parts[1] if len(parts) > 1 else ""
    split = parts[2] if len(parts) > 2 else "test"
    if name != "digits" or split not in ("test", "train", "all") or len(parts) > 3:
        raise DataError(
            f"unknown built-in data {spec!r}",
            field="data",
            fix="Use builtin:digits (test split), builtin:digits:train or builtin:digits:all.",
        )
    x, y, idx = digits_split(split)
    return Dataset(torch.from_numpy(x), torch.from_numpy(y), [f"digits-{i}" for i in idx], spec, 10)


DATA_SCHEMES.add("builtin", _builtin)


def digits_split(split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits in [0, 1] as (N, 1, 8, 8) float32, with a fixed seeded split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    perm = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(y))
    n_test = int(round(len(y) * DIGITS_TEST_FRACTION))
    if split == "all":
        idx = np.arange(len(y))
    else:
        idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    return x[idx], y[idx], idx


def _open_npz(path: Path, spec: str) -> DataStream:
    """An .npz as a stream: ``x`` memory-mapped from the file when it is stored uncompressed
    (``numpy.savez``), else read into memory (``savez_compressed``); ``y`` and ``ids`` in memory."""
    if not path.exists():
        raise DataError(f"file not found: {path}", field="data", fix="Check the path.")
    mapped = _map_npz_x(path)
    arrays, names = _read_npz(path, skip=("x",) if mapped is not None else ())
    missing = [k for k in ("x", "y") if k not in arrays and not (k == "x" and mapped is not None)]
    if missing:
        raise DataError(
            f"{path} has no array {' or '.join(repr(m) for m in missing)} (it has {sorted(names)})",
            field="data",
            fix="Save inputs as 'x' and labels as 'y': numpy.savez(path, x=..., y=...).",
        )
    ids = [str(i) for i in arrays["ids"].tolist()] if "ids" in arrays else None
    if mapped is None:
        return TensorStream(_from_arrays(arrays["x"], arrays["y"], ids, spec))
    labels = _from_arrays(np.zeros((len(arrays["y"]), 1), np.float32), arrays["y"], ids, spec)
    if mapped.ndim < 2 or mapped.shape[0] != labels.y.shape[0]:
        # the in-memory path's checks name the problem
        return TensorStream(_from_arrays(np.array(mapped), arrays["y"], ids, spec))
    if ids is not None and len(ids) != mapped.shape[0]:
        raise DataError(
            f"{len(ids)} ids for {mapped.shape[0]} samples", field="data.ids", fix="Give one id per sample."
        )
    if ids is not None and len(set(ids)) != len(ids):
        raise DataError("sample ids are not unique", field="data.ids", fix="Give each sample its own id.")
    return ArrayStream(spec, mapped, labels.y.numpy(), ids, meta={"memory_mapped": True})


def _map_npz_x(path: Path) -> np.ndarray | None:
    """``x`` of an .npz as a read-only ``numpy.memmap`` when it can be (stored uncompressed, C order,
    floating point, its declared size inside the file), else None (it is then read as usual)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = next((i for i in zf.infolist() if i.filename in ("x.npy", "x")), None)
            if info is None or info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                return None
            _check_npz_member(path, "x", info)
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
        _check_numeric_dtype(dtype, "x")
        n_bytes = math.prod(shape) * dtype.itemsize
        if fortran or dtype.kind != "f" or offset - start + n_bytes > info.file_size or not shape:
            return None
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
    except DataError:
        raise
    except _NPZ_ERRORS:
        return None  # read the usual way, which names what is wrong


_NPZ_FIX = "Save it with numpy.savez(path, x=inputs, y=labels); object arrays are not allowed."
# What reading a damaged or crafted .npz member can raise.
_NPZ_ERRORS = (
    zipfile.BadZipFile,  # a bad CRC or header in the member
    ValueError,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    MemoryError,
)


def _read_npz(path: Path, skip: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays ``x``, ``y`` and ``ids`` of an .npz (but those in ``skip``), and the names of all
    its members.

    Each of the three is read only after its declared sizes and dtype are checked; other members
    are never read (np.load would decompress whatever is asked for, however large).
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path} as .npz ({type(exc).__name__}: {exc})", field="data", fix=_NPZ_FIX
        ) from None
    with zf:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            members.setdefault(info.filename.removesuffix(".npy"), info)
        arrays = {
            name: _read_npz_member(zf, path, name, members[name])
            for name in NPZ_MEMBERS
            if name in members and name not in skip
        }
    return arrays, list(members)


def _read_npz_member(zf: zipfile.ZipFile, path: Path, name: str, info: zipfile.ZipInfo) -> np.ndarray:
    """One member's array, after its declared sizes and its header are checked."""
    _check_npz_member(path, name, info)
    try:
        with zf.open(info) as fp:
            _check_npy_header(path, name, info, fp)
        with zf.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except _NPZ_ERRORS as exc:
        raise DataError(
            f"cannot read {path} as .npz: array {name!r} is unreadable ({type(exc).__name__}: {exc})",
            field=f"data.{name}",
            fix=_NPZ_FIX,
        ) from None


def _check_npz_member(path: Path, name: str, info: zipfile.ZipInfo) -> None:
    """Refuse a member whose declared uncompressed size is over the limits, before reading it."""
    size, stored = info.file_size, info.compress_size
    if size > NPZ_MAX_MEMBER_BYTES:
        raise DataError(
            f"array {name!r} in {path} declares {_mb(size)} uncompressed, over the limit of "
            f"{_mb(NPZ_MAX_MEMBER_BYTES)} (robustness.core.data.NPZ_MAX_MEMBER_BYTES)",
            field=f"data.{name}",
            fix="Evaluate on a subset saved to a smaller file, or raise the limit if the memory is there.",
        )
    if size > NPZ_RATIO_MIN_BYTES and size > NPZ_MAX_RATIO * max(stored, 1):
        raise DataError(
            f"array {name!r} in {path} decompresses to {_mb(size)} from {_mb(stored)} stored "
            f"({size / max(stored, 1):.0f} times), over the limit of {NPZ_MAX_RATIO} times "
            "(robustness.core.data.NPZ_MAX_RATIO): a decompression bomb, or data that is almost all one value",
            field=f"data.{name}",
            fix="Save the data uncompressed with numpy.savez (not savez_compressed) if it is genuine.",
        )


def _check_npy_header(path: Path, name: str, info: zipfile.ZipInfo, fp: Any) -> None:
    """Refuse an array whose header declares more data than its member holds, or a non-numeric dtype."""
    version = np.lib.format.read_magic(fp)
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read_header(fp)
    _check_numeric_dtype(dtype, name)
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > info.file_size:
        # numpy would allocate the declared size before finding the data missing
        raise DataError(
            f"array {name!r} in {path} declares shape {tuple(shape)} ({_mb(n_bytes)}) but its member "
            f"holds only {_mb(info.file_size)}",
            field=f"data.{name}",
            fix="The file is damaged or crafted; save it again with numpy.savez.",
        )


def _check_numeric_dtype(dtype: np.dtype, name: str) -> None:
    """Strings, structured records, objects and dates are not inputs or labels (ids may be strings)."""
    kind = dtype.kind
    if dtype.fields is not None or kind == "V":
        what = "structured records"
    elif kind in "US" and name != "ids":
        what = "strings"
    elif kind == "O":
        what = "Python objects"
    elif kind in "Mm":
        what = "dates or times"
    else:
        return
    fix = {
        "x": "Save the inputs as a float array (N x ...) in the model's bounds.",
        "y": "Save the labels as integer class indices 0..C-1 (map class names to indices first).",
    }.get(name, "Save the ids as strings or integers, one per sample.")
    if kind == "O":
        fix += " Python object arrays are not allowed: reading them would unpickle."
    raise DataError(f"{name} holds {what} (dtype {dtype}), not numbers", field=f"data.{name}", fix=fix)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def _open_factory(spec: str, args: dict[str, Any] | None) -> DataStream:
    """Call ``package.module:callable`` with ``args``; arrays come back in memory, a map-style
    ``torch.utils.data.Dataset`` is streamed."""
    from robustness.core.model import import_object

    try:
        fn = import_object(spec, field="data")
    except ModelError as exc:
        raise DataError(exc.message, field="data", fix=exc.fix) from None
    try:
        out = fn(**(args or {}))
    except Exception as exc:  # noqa: BLE001 - the user's factory
        raise DataError(
            f"calling {spec} failed: {type(exc).__name__}: {exc}",
            field="data",
            fix="Check the factory's keyword arguments (--data-arg KEY=VALUE / data.args) against its signature."
            if args
            else "Make the factory callable without arguments (or give its kwargs: --data-arg KEY=VALUE).",
        ) from exc
    if isinstance(out, Dataset):
        out.spec = spec
        return TensorStream(out)
    if isinstance(out, dict) and "x" in out and "y" in out:
        return TensorStream(_from_arrays(out["x"], out["y"], out.get("ids"), spec))
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return TensorStream(_from_arrays(out[0], out[1], out[2] if len(out) == 3 else None, spec))
    if _is_map_style(out):
        names = getattr(out, "classes", None)
        meta = {"format": f"{type(out).__name__} (map-style dataset)"}
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            meta["class_names"] = list(names)  # torchvision datasets name their classes so
        return MapStream(spec, out, meta=meta)
    raise DataError(
        f"{spec} returned {type(out).__name__}",
        field="data",
        fix="Return (x, y), (x, y, ids), a dict with 'x' and 'y', a robustness.core.data.Dataset, or a "
        "map-style torch.utils.data.Dataset yielding (input tensor, label) pairs (an IterableDataset "
        "cannot be subset or resumed: wrap it in a map-style one).",
    )


def _is_map_style(obj: Any) -> bool:
    """A map-style dataset: indexable with a length (torch's Dataset, or anything shaped like one)."""
    from torch.utils.data import IterableDataset

    if isinstance(obj, IterableDataset | torch.Tensor | np.ndarray | str | bytes | dict):
        return False
    try:
        return hasattr(obj, "__getitem__") and len(obj) >= 0
    except TypeError:  # no length (torch's Dataset base class defines none)
        return False


def _from_arrays(x: Any, y: Any, ids: Sequence[Any] | None, spec: str) -> Dataset:
    xt = _as_tensor(x, "x")
    yt = _as_tensor(y, "y")
    if not torch.is_floating_point(xt):
        if xt.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            raise DataError(
                f"inputs have integer dtype {xt.dtype}",
                field="data.x",
                fix="Scale them to floats in the model's bounds first (e.g. x / 255.0 for [0, 1]).",
            )
        raise DataError(f"inputs have dtype {xt.dtype}", field="data.x", fix="Give float inputs.")
    if torch.is_floating_point(yt):
        if not torch.isfinite(yt).all() or not (yt == yt.round()).all():
            raise DataError(
                "labels are not integers",
                field="data.y",
                fix="Give class indices 0..C-1 as integers, not one-hot or probabilities.",
            )
    if yt.dim() != 1:
        raise DataError(
            f"labels have shape {tuple(yt.shape)}, expected (N,)",
            field="data.y",
            fix="Give one integer class index per sample (not one-hot).",
        )
    id_list = None if ids is None else [str(i) for i in list(ids)]
    return Dataset(xt.float(), yt.long(), id_list if id_list is not None else [], spec)


def _as_tensor(a: Any, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu()
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"cannot turn {name} into an array: {exc}",
            field=f"data.{name}",
            fix="Give numpy arrays or tensors.",
        ) from exc
    if arr.dtype == object:
        raise DataError(f"{name} is an object array", field=f"data.{name}", fix="Give numeric arrays.")
    _check_numeric_dtype(arr.dtype, name)
    try:
        return torch.from_numpy(np.ascontiguousarray(arr))
    except TypeError:  # a dtype torch has no tensor type for (e.g. float128)
        raise DataError(
            f"{name} has dtype {arr.dtype}, which torch cannot hold",
            field=f"data.{name}",
            fix="Save inputs as float32 and labels as int64.",
        ) from None


def validate_dataset(
    ds: Dataset,
    *,
    bounds: Sequence[float] | None = (0.0, 1.0),
    num_classes: int | None = None,
    model_outputs: int | None = None,
) -> Dataset:
    """Check shapes, dtypes, finiteness, bounds and labels; fill in ids and ``num_classes``.

    ``model_outputs``: the model's number of outputs; labels it cannot predict raise a
    :class:`ModelError` (the model does not fit the data), not a :class:`DataError`.
    """
    x, y = ds.x, ds.y
    if x.dim() < 2:
        raise DataError(
            f"inputs have shape {tuple(x.shape)}, expected (N, ...) with one row per sample",
            field="data.x",
            fix="Give inputs as N x C x H x W (or N x D).",
        )
    if x.shape[0] == 0:
        raise DataError(f"{ds.spec} is empty", field="data", fix="Give at least one sample.")
    if y.dim() != 1:
        raise DataError(
            f"labels have shape {tuple(y.shape)}, expected (N,)",
            field="data.y",
            fix="Give one integer class index per sample (not one-hot).",
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{x.shape[0]} inputs but {y.shape[0]} labels",
            field="data",
            fix="Give exactly one label per input.",
        )
    if not torch.is_floating_point(x):
        raise DataError(f"inputs have dtype {x.dtype}", field="data.x", fix="Give float inputs.")
    check_inputs(x, bounds=bounds)
    limit = next((n for n in (num_classes, model_outputs, ds.num_classes) if n is not None), None)
    check_labels(y, limit=limit, model_outputs=model_outputs)
    y = y.long()
    ymax = int(y.max())
    ids = ds.ids or [str(i) for i in range(x.shape[0])]
    if len(ids) != x.shape[0]:
        raise DataError(
            f"{len(ids)} ids for {x.shape[0]} samples", field="data.ids", fix="Give one id per sample."
        )
    if len(set(ids)) != len(ids):
        raise DataError("sample ids are not unique", field="data.ids", fix="Give each sample its own id.")
    n_cls = limit if limit is not None else ymax + 1
    return Dataset(x.float().contiguous(), y, ids, ds.spec, n_cls, dict(ds.meta))


def check_inputs(
    x: torch.Tensor, *, bounds: Sequence[float] | None, names: Sequence[str] | None = None
) -> None:
    """Inputs finite and within ``bounds``; an error names the first bad sample (by its id in
    ``names`` when given, else its index)."""

    def sample(mask: torch.Tensor) -> str:
        first = int(mask.nonzero()[0])
        return names[first] if names is not None else str(first)

    # one pass, no input-sized temporaries: NaN and inf show in a sample's extremes
    low, high = torch.aminmax(x.flatten(1), dim=1)
    bad = ~(torch.isfinite(low) & torch.isfinite(high))
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} inputs contain NaN or inf (first: sample {sample(bad)})",
            field="data.x",
            fix="Remove or repair those samples.",
        )
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        xmin, xmax = float(low.min()), float(high.max())
        if xmin < lo - 1e-6 or xmax > hi + 1e-6:
            outside = (low < lo - 1e-6) | (high > hi + 1e-6)
            which = f" (first: sample {sample(outside)})" if names is not None else ""
            raise DataError(
                f"input values span [{xmin:g}, {xmax:g}], outside the model's bounds [{lo:g}, {hi:g}]{which}",
                field="data.x",
                fix="Scale the inputs into the bounds (e.g. divide by 255), or set "
                "the model's bounds (and mean/std) to match the data.",
            )


def check_labels(
    y: torch.Tensor,
    *,
    limit: int | None,
    model_outputs: int | None,
    names: Sequence[str] | None = None,
) -> None:
    """Integer labels in ``[0, limit)``; one the model cannot predict is the model's problem
    (:func:`check_labels_fit_model`). ``names``: ids of the samples, to name the first bad one."""
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise DataError(f"labels have dtype {y.dtype}", field="data.y", fix="Give integer class indices.")
    if y.numel() == 0:
        return
    y = y.long()
    ymin, ymax = int(y.min()), int(y.max())
    if model_outputs is not None and ymin >= 0:
        check_labels_fit_model(ymax, model_outputs)
    if ymin < 0 or (limit is not None and ymax >= limit):
        rng = f"[0, {limit})" if limit is not None else "[0, C)"
        which = ""
        if names is not None:
            bad = (y < 0) | (y >= limit) if limit is not None else y < 0
            which = f" (first: sample {names[int(bad.nonzero()[0])]})"
        raise DataError(
            f"labels span {ymin}..{ymax}, outside {rng}{which}",
            field="data.y",
            fix="Give labels as class indices 0..num_classes-1.",
        )


# The standard dataset files and image folders register their schemes (cifar10:, cifar100:, folder:)
# from their own modules;
# imported here, at the end, because that module needs DATA_SCHEMES and Dataset defined above.
from robustness.core import cifar as _cifar  # noqa: E402, F401
from robustness.core import folder as _folder  # noqa: E402, F401
