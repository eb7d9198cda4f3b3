"""Data loading (built-in digits, .npz, factories), validation errors and reproducible subsets."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch

from robustness.core.data import Dataset, digits_split, load_data, validate_dataset
from robustness.core.errors import DataError

# ---------------------------------------------------------------------------------------
# built-in digits


def test_builtin_digits_test_split(digits_test):
    d = digits_test
    assert len(d) == 359 and d.spec == "builtin:digits"
    assert d.x.shape == (359, 1, 8, 8) and d.x.dtype == torch.float32
    assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    assert d.y.dtype == torch.int64 and d.num_classes == 10
    # The split is fixed: these ids and class counts must never change (the zoo's accuracy is measured on it).
    assert d.ids[:5] == ["digits-4", "digits-5", "digits-6", "digits-9", "digits-14"]
    assert d.y.bincount().tolist() == [27, 35, 36, 29, 30, 40, 44, 39, 38, 41]
    assert d.info() == {
        "spec": "builtin:digits",
        "n": 359,
        "sha256": d.sha256(),
        "shape": [1, 8, 8],
        "num_classes": 10,
    }


def test_builtin_digits_train_split_is_disjoint_and_stable(digits_test):
    train = load_data("builtin:digits:train")
    assert len(train) == 1438 and train.x.shape[1:] == (1, 8, 8)
    assert not set(train.ids) & set(digits_test.ids)
    assert len(set(train.ids) | set(digits_test.ids)) == 1797
    again = load_data("builtin:digits")
    assert again.ids == digits_test.ids and again.sha256() == digits_test.sha256()
    x, y, idx = digits_split("train")
    assert torch.equal(torch.from_numpy(x), train.x) and list(idx) == sorted(idx)
    # the pixels are scikit-learn's 0..16 counts divided by 16
    assert torch.equal(train.x * 16, (train.x * 16).round())


def test_builtin_digits_all():
    assert len(load_data("builtin:digits:all")) == 1797


@pytest.mark.parametrize(
    "spec", ["builtin:mnist", "builtin:digits:val", "builtin:digits:train:x", "builtin:"]
)
def test_unknown_builtin(spec):
    with pytest.raises(DataError, match=f"unknown built-in data '{spec}'"):
        load_data(spec)


# ---------------------------------------------------------------------------------------
# .npz files


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _good(n=12):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 4, 4), dtype=np.float32), (np.arange(n) % 3).astype(np.int64)


def test_npz_good(tmp_path):
    x, y = _good()
    d = load_data(_npz(tmp_path, x=x, y=y))
    assert d.x.shape == (12, 1, 4, 4) and d.x.dtype == torch.float32
    assert torch.equal(d.x, torch.from_numpy(x)) and d.y.tolist() == y.tolist()
    assert d.ids == [str(i) for i in range(12)]
    assert d.num_classes == 3  # inferred from the labels when nobody says
    assert load_data(_npz(tmp_path, x=x, y=y), num_classes=10).num_classes == 10


def test_npz_with_ids_and_other_dtypes(tmp_path):
    x, y = _good(4)
    ids = np.array(["a", "b", "c", "d"])
    d = load_data(_npz(tmp_path, x=x.astype(np.float64), y=y.astype(np.int32), ids=ids))
    assert d.ids == ["a", "b", "c", "d"] and d.x.dtype == torch.float32 and d.y.dtype == torch.int64
    # float labels holding whole numbers are accepted
    assert load_data(_npz(tmp_path, "f.npz", x=x, y=y.astype(np.float32))).y.tolist() == y.tolist()
    # flat inputs (N x D) are fine
    assert load_data(_npz(tmp_path, "flat.npz", x=x.reshape(4, -1), y=y)).x.shape == (4, 16)


def _case(name):
    """(arrays, expected message, field) for a malformed file."""
    x, y = _good()
    nan_x = x.copy()
    nan_x[3, 0, 1, 1] = np.nan
    inf_x = x.copy()
    inf_x[5, 0, 0, 0] = np.inf
    cases = {
        "labels-too-large": (
            dict(x=x, y=np.where(y == 2, 10, y)),
            r"labels span 0..10, outside \[0, 10\)",
            "data.y",
        ),
        "labels-negative": (dict(x=x, y=y - 1), r"labels span -1..1, outside \[0, C\)", "data.y"),
        "nan-inputs": (dict(x=nan_x, y=y), r"1 inputs contain NaN or inf \(first: sample 3\)", "data.x"),
        "inf-inputs": (dict(x=inf_x, y=y), r"1 inputs contain NaN or inf \(first: sample 5\)", "data.x"),
        "outside-bounds": (
            dict(x=x * 255, y=y),
            r"input values span \[.*, .*\], outside the model's bounds \[0, 1\]",
            "data.x",
        ),
        "negative-values": (dict(x=x - 0.5, y=y), r"outside the model's bounds \[0, 1\]", "data.x"),
        "length-mismatch": (dict(x=x, y=y[:-2]), "12 inputs but 10 labels", "data"),
        "empty": (dict(x=x[:0], y=y[:0]), "is empty", "data"),
        "integer-inputs": (
            dict(x=(x * 255).astype(np.uint8), y=y),
            "inputs have integer dtype torch.uint8",
            "data.x",
        ),
        "missing-x": (dict(inputs=x, y=y), r"has no array 'x' \(it has \['inputs', 'y'\]\)", "data"),
        "missing-both": (dict(a=x), "has no array 'x' or 'y'", "data"),
        "float-labels": (dict(x=x, y=y + 0.5), "labels are not integers", "data.y"),
        "one-hot-labels": (
            dict(x=x, y=np.eye(3, dtype=np.int64)[y]),
            r"labels have shape \(12, 3\)",
            "data.y",
        ),
        "scalar-inputs": (
            dict(x=np.float32(0.5), y=y),
            r"inputs have shape \(1,\), expected \(N, ...\)",
            "data.x",
        ),
        "duplicate-ids": (dict(x=x, y=y, ids=np.array(["a"] * 12)), "sample ids are not unique", "data.ids"),
        "wrong-id-count": (dict(x=x, y=y, ids=np.array(["a", "b"])), "2 ids for 12 samples", "data.ids"),
        "bool-inputs": (dict(x=x > 0.5, y=y), "inputs have dtype torch.bool", "data.x"),
    }
    return cases[name]


BAD_NPZ = [
    "labels-too-large",
    "labels-negative",
    "nan-inputs",
    "inf-inputs",
    "outside-bounds",
    "negative-values",
    "length-mismatch",
    "empty",
    "integer-inputs",
    "missing-x",
    "missing-both",
    "float-labels",
    "one-hot-labels",
    "scalar-inputs",
    "duplicate-ids",
    "wrong-id-count",
    "bool-inputs",
]


@pytest.mark.parametrize("name", BAD_NPZ)
def test_npz_bad(tmp_path, name):
    arrays, expected, field = _case(name)
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=expected) as e:
        load_data(path, num_classes=10 if name == "labels-too-large" else None)
    assert e.value.field == field
    assert e.value.fix  # every error says what to do


def test_npz_values_outside_bounds_fix_mentions_scaling(tmp_path):
    x, y = _good()
    with pytest.raises(DataError) as e:
        load_data(_npz(tmp_path, x=x * 255, y=y))
    assert "divide by 255" in str(e.value)
    # the same data is fine for a model whose bounds are [0, 255], or when bounds are not checked
    assert len(load_data(_npz(tmp_path, "b.npz", x=x * 255, y=y), bounds=(0, 255))) == 12
    assert len(load_data(_npz(tmp_path, "c.npz", x=x * 255, y=y), bounds=None)) == 12


def test_npz_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(DataError, match=r"cannot read .*corrupt.npz as .npz") as e:
        load_data(str(path))
    assert "numpy.savez" in str(e.value)


def test_npz_object_arrays_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="object arrays are not allowed"):
        load_data(str(path))


def test_npz_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_data(str(tmp_path / "nope.npz"))


def test_unrecognised_data_spec():
    with pytest.raises(DataError, match="cannot tell what kind of data 'digits'"):
        load_data("digits")


# ---------------------------------------------------------------------------------------
# factories and in-memory data

FACTORY_SOURCE = textwrap.dedent(
    """
    import numpy as np
    import torch

    def pair():
        x = np.linspace(0, 1, 5 * 4, dtype=np.float32).reshape(5, 1, 2, 2)
        return x, np.array([0, 1, 2, 1, 0])

    def triple():
        x, y = pair()
        return torch.from_numpy(x), torch.from_numpy(y), [f"s{i}" for i in range(5)]

    def as_dict():
        x, y = pair()
        return {"x": x, "y": y}

    def nan_data():
        x, y = pair()
        x[2, 0, 0, 0] = np.nan
        return x, y

    def wrong():
        return "data"

    def broken():
        raise OSError("disk on fire")
    """
)


@pytest.fixture
def data_factories(tmp_path, monkeypatch):
    (tmp_path / "rb_tiny_data.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rb_tiny_data", raising=False)
    yield
    sys.modules.pop("rb_tiny_data", None)


def test_factory_specs(data_factories):
    d = load_data("rb_tiny_data:pair")
    assert d.spec == "rb_tiny_data:pair" and d.x.shape == (5, 1, 2, 2) and d.y.tolist() == [0, 1, 2, 1, 0]
    assert load_data("rb_tiny_data:triple").ids == ["s0", "s1", "s2", "s3", "s4"]
    assert torch.equal(load_data("rb_tiny_data:as_dict").x, d.x)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("rb_tiny_data:nan_data", r"1 inputs contain NaN or inf \(first: sample 2\)"),
        ("rb_tiny_data:wrong", "rb_tiny_data:wrong returned str"),
        ("rb_tiny_data:broken", "OSError: disk on fire"),
        ("rb_tiny_data:missing", "has no attribute 'missing'"),
        ("rb_no_such_data_mod:f", "cannot import 'rb_no_such_data_mod'"),
    ],
)
def test_bad_factories(data_factories, spec, expected):
    with pytest.raises(DataError, match=expected) as e:
        load_data(spec)
    assert e.value.field.startswith("data")


def test_dataset_object_is_validated():
    x = torch.rand(3, 2)
    d = load_data(Dataset(x, torch.tensor([0, 1, 1]), []))
    assert d.ids == ["0", "1", "2"] and d.num_classes == 2
    with pytest.raises(DataError, match="labels have dtype torch.float32"):
        validate_dataset(Dataset(x, torch.tensor([0.0, 1.0, 1.0]), []))


# ---------------------------------------------------------------------------------------
# subsets


def test_subset_is_reproducible(digits_test):
    a = load_data("builtin:digits", n_examples=50, seed=7)
    b = load_data("builtin:digits", n_examples=50, seed=7)
    c = load_data("builtin:digits", n_examples=50, seed=8)
    assert a.ids == b.ids and a.sha256() == b.sha256()
    assert a.ids != c.ids
    assert len(a) == 50 and len(set(a.ids)) == 50
    # a subset of the split, kept in the split's order, with matching rows
    pos = [digits_test.ids.index(i) for i in a.ids]
    assert pos == sorted(pos)
    assert torch.equal(a.x, digits_test.x[pos]) and torch.equal(a.y, digits_test.y[pos])
    assert load_data("builtin:digits", n_examples=5, seed=3).ids == [
        "digits-564",
        "digits-984",
        "digits-1189",
        "digits-1257",
        "digits-1525",
    ]
    assert len(load_data("builtin:digits", n_examples=np.int64(359))) == 359


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, "n_examples must be a positive integer, got 0"),
        (-3, "n_examples must be a positive integer, got -3"),
        (2.5, "n_examples must be a positive integer, got 2.5"),
        (True, "n_examples must be a positive integer, got True"),
        (360, "n_examples is 360 but builtin:digits has only 359 samples"),
    ],
)
def test_subset_errors(n, expected):
    with pytest.raises(DataError, match=expected) as e:
        load_data("builtin:digits", n_examples=n)
    assert e.value.field == "n_examples"


def test_subset_and_hash(digits_test):
    s = digits_test.subset([3, 1])
    assert s.ids == [digits_test.ids[3], digits_test.ids[1]]
    assert s.sha256() != digits_test.subset([1, 3]).sha256()
    assert s.num_classes == 10 and s.spec == "builtin:digits"
