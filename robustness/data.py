"""Evaluation data: loading from a spec, validation, reproducible subsets, stable ids."""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustness.errors import DataError

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


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
        }


def load_data(
    spec: str | Dataset,
    *,
    n_examples: int | None = None,
    seed: int = 0,
    bounds: Sequence[float] | None = (0.0, 1.0),
    num_classes: int | None = None,
) -> Dataset:
    """Load and validate data from a spec.

    Specs: ``builtin:digits`` (test split), ``builtin:digits:train``, ``file.npz`` (arrays
    ``x`` and ``y``, optional ``ids``), ``package.module:callable`` returning ``(x, y)``,
    a dict with ``x``/``y``(/``ids``) or a :class:`Dataset`. ``n_examples`` picks a
    reproducible subset drawn with ``seed`` (kept in the original order).
    """
    if isinstance(spec, Dataset):
        ds = spec
    else:
        ds = _load(str(spec))
    ds = validate_dataset(ds, bounds=bounds, num_classes=num_classes)
    if n_examples is not None:
        ds = pick_subset(ds, n_examples, seed)
    return ds


def pick_subset(ds: Dataset, n_examples: int, seed: int) -> Dataset:
    if not isinstance(n_examples, numbers.Integral) or isinstance(n_examples, bool) or n_examples <= 0:
        raise DataError(
            f"n_examples must be a positive integer, got {n_examples!r}",
            field="n_examples",
            fix="Give a number of samples such as 200, or leave it out to use all.",
        )
    if n_examples > len(ds):
        raise DataError(
            f"n_examples is {n_examples} but {ds.spec} has only {len(ds)} samples",
            field="n_examples",
            fix=f"Use at most {len(ds)}, or leave it out to use all.",
        )
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(ds), generator=g)[: int(n_examples)].sort().values
    return ds.subset(idx)


def _load(spec: str) -> Dataset:
    if spec.startswith("builtin:"):
        return _builtin(spec)
    path = Path(spec)
    if path.suffix == ".npz" or path.exists():
        return _load_npz(path, spec)
    if ":" in spec:
        return _load_factory(spec)
    raise DataError(
        f"cannot tell what kind of data {spec!r} is",
        field="data",
        fix="Use builtin:digits, builtin:digits:train, a .npz file with arrays x and y, "
        "or a factory 'package.module:callable'.",
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


def _load_npz(path: Path, spec: str) -> Dataset:
    if not path.exists():
        raise DataError(f"file not found: {path}", field="data", fix="Check the path.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - anything np.load raises means a bad file
        raise DataError(
            f"cannot read {path} as .npz ({type(exc).__name__}: {exc})",
            field="data",
            fix="Save it with numpy.savez(path, x=inputs, y=labels); object arrays are not allowed.",
        ) from exc
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{path} has no array {' or '.join(repr(m) for m in missing)} (it has {sorted(arrays)})",
            field="data",
            fix="Save inputs as 'x' and labels as 'y': numpy.savez(path, x=..., y=...).",
        )
    ids = [str(i) for i in arrays["ids"].tolist()] if "ids" in arrays else None
    return _from_arrays(arrays["x"], arrays["y"], ids, spec)


def _load_factory(spec: str) -> Dataset:
    from robustness.errors import ModelError
    from robustness.model import import_object

    try:
        fn = import_object(spec, field="data")
    except ModelError as exc:
        raise DataError(exc.message, field="data", fix=exc.fix) from None
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - the user's factory
        raise DataError(
            f"calling {spec} failed: {type(exc).__name__}: {exc}",
            field="data",
            fix="Make the factory callable without arguments.",
        ) from exc
    if isinstance(out, Dataset):
        out.spec = spec
        return out
    if isinstance(out, dict) and "x" in out and "y" in out:
        return _from_arrays(out["x"], out["y"], out.get("ids"), spec)
    if isinstance(out, (tuple, list)) and len(out) in (2, 3):
        return _from_arrays(out[0], out[1], out[2] if len(out) == 3 else None, spec)
    raise DataError(
        f"{spec} returned {type(out).__name__}",
        field="data",
        fix="Return (x, y), (x, y, ids), a dict with 'x' and 'y', or a robustness.data.Dataset.",
    )


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
    return torch.from_numpy(np.ascontiguousarray(arr))


def validate_dataset(
    ds: Dataset, *, bounds: Sequence[float] | None = (0.0, 1.0), num_classes: int | None = None
) -> Dataset:
    """Check shapes, dtypes, finiteness, bounds and labels; fill in ids and ``num_classes``."""
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
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise DataError(
            f"{int(bad.sum())} inputs contain NaN or inf (first: sample {first})",
            field="data.x",
            fix="Remove or repair those samples.",
        )
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - 1e-6 or xmax > hi + 1e-6:
            raise DataError(
                f"input values span [{xmin:g}, {xmax:g}], outside the model's bounds [{lo:g}, {hi:g}]",
                field="data.x",
                fix="Scale the inputs into the bounds (e.g. divide by 255), or set "
                "the model's bounds (and mean/std) to match the data.",
            )
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise DataError(f"labels have dtype {y.dtype}", field="data.y", fix="Give integer class indices.")
    y = y.long()
    ymin, ymax = int(y.min()), int(y.max())
    limit = num_classes if num_classes is not None else ds.num_classes
    if ymin < 0 or (limit is not None and ymax >= limit):
        rng = f"[0, {limit})" if limit is not None else "[0, C)"
        raise DataError(
            f"labels span {ymin}..{ymax}, outside {rng}",
            field="data.y",
            fix="Give labels as class indices 0..num_classes-1.",
        )
    ids = ds.ids or [str(i) for i in range(x.shape[0])]
    if len(ids) != x.shape[0]:
        raise DataError(
            f"{len(ids)} ids for {x.shape[0]} samples", field="data.ids", fix="Give one id per sample."
        )
    if len(set(ids)) != len(ids):
        raise DataError("sample ids are not unique", field="data.ids", fix="Give each sample its own id.")
    n_cls = limit if limit is not None else ymax + 1
    return Dataset(x.float().contiguous(), y, ids, ds.spec, n_cls, dict(ds.meta))
