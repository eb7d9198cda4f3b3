"""Evaluation data read batch by batch, so that a command holds only the batches in flight.

A :class:`DataStream` knows how many samples there are, their ids and where to read them; it
reads them when asked, one batch at a time, and checks every batch it hands out (finite inputs
in the model's bounds, labels the model can predict, one sample shape throughout). Three kinds:

- :class:`TensorStream`: data already in memory (``builtin:``, the CIFAR python version, a
  compressed ``.npz``, a factory returning arrays): batches are views of its tensors.
- :class:`ArrayStream`: arrays read on demand: the ``x`` of an uncompressed ``.npz`` or the CIFAR
  binary files, memory-mapped.
- :class:`MapStream`: any map-style ``torch.utils.data.Dataset`` yielding ``(image tensor, label)``
  (an image folder, a user's dataset), read through a ``DataLoader``, with worker processes
  and pinned memory where asked.

``subset()`` narrows a stream to some positions, so that any set of samples can be read in batches
(the audit reads its samples this way: :mod:`robustness.core.rows`); ``materialize()`` reads a
stream whole into a :class:`robustness.core.data.Dataset`, for the code that needs every sample at
once (the privacy, extraction and watermark methods).
"""

from __future__ import annotations

import copy
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robustness.core.errors import DataError

if TYPE_CHECKING:
    from robustness.core.data import Dataset

# Reader processes for a stream that asks for them (image folders): one core is left to the
# model, and a few decoders keep a GPU fed; more rarely pay off.
MAX_AUTO_WORKERS = 4


# Freed memory is handed back to the system after every TRIM_EVERY_BYTES of inputs read (see
# release_freed_memory); a trim costs about as much as reading a few MB of images.
TRIM_EVERY_BYTES = 16 * 2**20


def release_freed_memory() -> None:
    """Hand the memory freed by the last batches back to the system (glibc's ``malloc_trim``).

    Each batch allocates and frees tensors of megabytes; glibc raises its mmap threshold to the
    largest size freed, so later ones come from the heap, which fragments and keeps growing
    although nothing is held (measured: ``robustness attack`` over 1,600 images of 224 x 224 in
    batches of 16 peaked at 2.3 GB, against 0.4 to 0.46 GB with a trim every 16 MB of inputs).
    A no-op where the C library is not glibc.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    import ctypes

    try:  # by its soname: ctypes.util.find_library would start a subprocess to look for it
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def auto_workers() -> int:
    """Reader processes by default: the cores but one, at most ``MAX_AUTO_WORKERS`` (0 on one core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


@dataclass
class Batch:
    """One batch of a stream: its number, the positions of its samples, inputs, labels and ids."""

    number: int
    index: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]


class DataStream:
    """Samples read on demand, in order, batch by batch; subclasses write :meth:`_read`.

    ``positions`` are the source's indices of the samples of this stream (a subset keeps its
    source and narrows them). :meth:`expect` sets what every batch is checked against.
    """

    in_memory = False  # whether every sample is already in memory (reading a batch is free)
    # whether reading every sample once is cheap next to attacking it (an array on disk), so that
    # bad data is found before any work rather than at the batch that holds it
    check_up_front = False

    def __init__(
        self,
        spec: str,
        n_source: int,
        *,
        ids: Sequence[str] | None = None,
        num_classes: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.num_classes = num_classes
        self.meta: dict[str, Any] = dict(meta or {})
        self.positions = torch.arange(n_source)
        self._source_ids = list(ids) if ids else None
        self.bounds: tuple[float, float] | None = None
        self.label_limit: int | None = None
        self.model_outputs: int | None = None
        self._shape: tuple[int, ...] | None = None

    # -- what a stream is ------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.positions.numel())

    @property
    def ids(self) -> list[str]:
        """The stable id of each sample (the source's ids, else its position in the source)."""
        if self._source_ids is None:
            return [str(p) for p in self.positions.tolist()]
        return [self._source_ids[p] for p in self.positions.tolist()]

    @property
    def class_names(self) -> list[str] | None:
        names = self.meta.get("class_names")
        return list(names) if isinstance(names, list) else None

    def subset(self, index: Sequence[int] | torch.Tensor) -> DataStream:
        """The samples at ``index`` (positions in this stream), read from the same source."""
        out = copy.copy(self)
        out.positions = self.positions[torch.as_tensor(index, dtype=torch.long)]
        out.meta = dict(self.meta)
        return out

    def expect(
        self,
        *,
        bounds: Sequence[float] | None = None,
        num_classes: int | None = None,
        model_outputs: int | None = None,
    ) -> DataStream:
        """Check every batch from now on: inputs within ``bounds``, labels below the first of
        ``num_classes``, ``model_outputs`` and the stream's own class count that is known."""
        self.bounds = (float(bounds[0]), float(bounds[1])) if bounds is not None else None
        self.model_outputs = model_outputs
        self.label_limit = next(
            (n for n in (num_classes, model_outputs, self.num_classes) if n is not None), None
        )
        if self.label_limit is not None:
            self.num_classes = self.label_limit
        return self

    # -- reading -------------------------------------------------------------------------
    def batches(
        self,
        batch_size: int,
        *,
        numbers: Sequence[int] | None = None,
        pin_memory: bool = False,
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` consecutive samples, checked; ``numbers`` picks some of them
        (a rank's share), by their number in the full sequence."""
        n = len(self)
        starts = list(range(0, n, batch_size))
        chosen = list(range(len(starts))) if numbers is None else [k for k in numbers if k < len(starts)]
        groups = [self.positions[starts[k] : starts[k] + batch_size] for k in chosen]
        all_ids = self.ids
        since_trim = 0
        for k, (x, y) in zip(chosen, self._read(groups, pin_memory=pin_memory)):
            stop = min(starts[k] + batch_size, n)
            batch = Batch(k, torch.arange(starts[k], stop), x, y, all_ids[starts[k] : stop])
            self._check(batch)
            since_trim += x.numel() * x.element_size()
            yield batch
            del batch, x, y
            if since_trim >= TRIM_EVERY_BYTES:
                release_freed_memory()
                since_trim = 0

    def peek(self, n: int = 8) -> torch.Tensor:
        """The inputs of the first ``n`` samples (to check the model against), read on their own
        and checked like every batch."""
        head = self.subset(range(min(n, len(self))))
        head._shape = None
        return next(head.batches(len(head))).x

    def check_all(self, batch_size: int = 1024) -> None:
        """Read every sample once and check it (see ``check_up_front``)."""
        for _ in self.batches(batch_size):
            pass

    def materialize(self, batch_size: int = 256) -> Dataset:
        """Every sample read into one in-memory :class:`Dataset` (filled in place, not concatenated)."""
        from robustness.core.data import Dataset

        x: torch.Tensor | None = None
        y = torch.empty(len(self), dtype=torch.long)
        for batch in self.batches(batch_size):
            if x is None:
                x = torch.empty((len(self), *batch.x.shape[1:]), dtype=torch.float32)
            x[batch.index] = batch.x.float()
            y[batch.index] = batch.y
        if x is None:
            raise DataError(f"{self.spec} is empty", field="data", fix="Give at least one sample.")
        return Dataset(x, y, self.ids, self.spec, self.num_classes, dict(self.meta))

    def _read(
        self, groups: list[torch.Tensor], *, pin_memory: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` for each group of source positions, in order."""
        raise NotImplementedError

    # -- checks --------------------------------------------------------------------------
    def _check(self, batch: Batch) -> None:
        """One batch against the same rules as a whole dataset (see ``data.validate_dataset``)."""
        from robustness.core.data import check_inputs, check_labels

        shape = tuple(batch.x.shape[1:])
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:
            raise DataError(
                f"sample {batch.ids[0]} of {self.spec} has shape {shape}, but the samples before it "
                f"have {self._shape}",
                field="data.x",
                fix="Give every sample the same shape (for an image folder: set --image-size / "
                "data.image_size to resize them).",
            )
        check_inputs(batch.x, bounds=self.bounds, names=batch.ids)
        check_labels(batch.y, limit=self.label_limit, model_outputs=self.model_outputs, names=batch.ids)


class TensorStream(DataStream):
    """A :class:`Dataset` already in memory, handed out batch by batch."""

    in_memory = True

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(
            dataset.spec, len(dataset), ids=dataset.ids, num_classes=dataset.num_classes, meta=dataset.meta
        )
        self.dataset = dataset

    def _read(
        self, groups: list[torch.Tensor], *, pin_memory: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for positions in groups:
            if positions.numel() and int(positions[-1] - positions[0]) == positions.numel() - 1:
                # consecutive samples: a view, no copy
                start, stop = int(positions[0]), int(positions[-1]) + 1
                yield self.dataset.x[start:stop], self.dataset.y[start:stop]
            else:
                yield self.dataset.x[positions], self.dataset.y[positions]

    def materialize(self, batch_size: int = 256) -> Dataset:
        if len(self) == len(self.dataset) and torch.equal(self.positions, torch.arange(len(self.dataset))):
            return self.dataset
        return self.dataset.subset(self.positions)


class ArrayStream(DataStream):
    """Inputs read on demand from arrays (``numpy.memmap``\\ s of files), labels in memory.

    ``x``: one array, or a list of arrays read one after another as one (the files of a split,
    each mapped on its own). ``decode`` turns a block of an array's rows into float32 inputs
    (default: the rows as float32); the CIFAR binary files give records of label bytes and uint8
    pixels, decoded into ``pixel / 255`` of shape (3, 32, 32). A batch reads only its own rows.
    After a batch is read, the pages of a memory-mapped file it touched are dropped from the
    process (``madvise(MADV_DONTNEED)``; the file is unchanged and read again if asked), so the
    mapped file does not pile up in the process's memory as the stream is read.
    """

    check_up_front = True

    def __init__(
        self,
        spec: str,
        x: np.ndarray | Sequence[np.ndarray],
        y: np.ndarray,
        ids: Sequence[str] | None,
        *,
        decode: Callable[[np.ndarray], np.ndarray] | None = None,
        **kwargs: Any,
    ) -> None:
        parts = list(x) if isinstance(x, list | tuple) else [x]
        sizes = [int(part.shape[0]) for part in parts]
        super().__init__(spec, sum(sizes), ids=ids, **kwargs)
        self.x = x
        self.parts = parts
        self.starts = np.cumsum([0, *sizes])  # source position of each part's first row
        self.decode = decode
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))

    def _read(
        self, groups: list[torch.Tensor], *, pin_memory: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for positions in groups:
            x = torch.from_numpy(self._rows(positions.numpy()))
            yield (x.pin_memory() if pin_memory else x), self.y[positions]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """The inputs at source positions ``rows``, in that order."""
        starts = self.starts
        if rows.size and rows[-1] - rows[0] == rows.size - 1:
            # consecutive: one slice of each part they span, each read as one stretch of its file
            lo, hi = int(rows[0]), int(rows[-1]) + 1
            pieces = []
            for k, part in enumerate(self.parts):
                a, b = max(lo, int(starts[k])) - int(starts[k]), min(hi, int(starts[k + 1])) - int(starts[k])
                if a < b:
                    pieces.append(self._take(part, slice(a, b), a, b))
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        # scattered (a subset): fancy indexing reads the rows one by one, part by part
        which = np.searchsorted(starts, rows, side="right") - 1
        out: np.ndarray | None = None
        for k in np.unique(which):
            mask = which == k
            local = rows[mask] - starts[k]
            block = self._take(self.parts[k], local, int(local.min()), int(local.max()) + 1)
            if out is None:
                out = np.empty((rows.size, *block.shape[1:]), dtype=block.dtype)
            out[mask] = block
        return out if out is not None else np.empty((0,), dtype=np.float32)

    def _take(self, part: np.ndarray, index: slice | np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Rows ``index`` of one part (all within ``lo:hi``) decoded, the part's pages dropped."""
        block = np.asarray(part[index])
        out = np.array(block, dtype=np.float32) if self.decode is None else self.decode(block)
        del block
        ArrayStream._drop_pages(part, lo, hi)
        return out

    @staticmethod
    def _drop_pages(part: np.ndarray, lo: int, hi: int) -> None:
        """Drop rows ``lo:hi`` of a ``numpy.memmap`` from the process's resident memory (a
        no-op for other arrays, or where ``madvise`` is missing)."""
        mm = getattr(part, "_mmap", None)  # numpy.memmap's own map of the file
        if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or hi <= lo:
            return
        try:
            base = part.ctypes.data - np.frombuffer(mm, dtype=np.uint8).ctypes.data
            start = base + lo * part.strides[0]
            end = base + hi * part.strides[0]
            start -= start % mmap.PAGESIZE
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError, TypeError, BufferError):
            pass  # only memory is at stake; the data read is right either way


class MapStream(DataStream):
    """A map-style ``torch.utils.data.Dataset`` of ``(input tensor, label)`` pairs, read through a
    ``DataLoader``.

    ``workers``: reader processes; None: with ``parallel``, :func:`auto_workers` when the batches go
    to a GPU (``pin_memory``), none when the model runs on the CPU, whose cores are the model's
    (a reader would compete with it for them). ``pixels``: the
    source yields ``uint8`` pixels, turned into ``pixel / 255`` here, after the hand-over from a
    reader process, which then moves a quarter of the bytes.
    """

    def __init__(
        self,
        spec: str,
        source: Any,
        *,
        workers: int | None = None,
        parallel: bool = False,
        pixels: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(spec, len(source), **kwargs)
        self.source = source
        self.workers = workers
        self.parallel = parallel
        self.pixels = pixels

    def _read(
        self, groups: list[torch.Tensor], *, pin_memory: bool
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        workers = self.workers
        if workers is None:
            workers = auto_workers() if self.parallel and pin_memory else 0
        if len(groups) <= 1:
            workers = 0  # one batch: a reader process would only add its start-up
        loader = DataLoader(
            _Guarded(self.source, self.spec, self.pixels),
            batch_sampler=[g.tolist() for g in groups],
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=pin_memory and torch.cuda.is_available(),
            worker_init_fn=_one_thread if workers else None,
        )
        for batch in loader:
            if isinstance(batch, _Failure):
                raise batch.error()
            x, y = batch
            yield (x.float().div_(255.0) if self.pixels else x), y


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a reader decodes; the cores belong to the model


@dataclass
class _Failure:
    """An error met while reading, carried out of a worker process as data (a raised exception
    would arrive as a traceback string without its field and fix)."""

    message: str
    field: str | None
    fix: str | None

    def error(self) -> DataError:
        return DataError(self.message, field=self.field, fix=self.fix)


_FORMS = (
    "A data factory's dataset must yield (input tensor, integer label) pairs, e.g. "
    "(torch.rand(3, 32, 32), 4): inputs as float tensors in the model's bounds (apply ToTensor() or "
    "equivalent), labels as class indices."
)


class _Guarded:
    """The source's items, with any failure turned into a :class:`_Failure` naming the sample."""

    def __init__(self, source: Any, spec: str, pixels: bool = False) -> None:
        self.source = source
        self.spec = spec
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Any:
        try:
            return _pair(self.source[i], i, self.spec, self.pixels)
        except DataError as exc:
            return _Failure(exc.message, exc.field, exc.fix)
        except Exception as exc:  # noqa: BLE001 - the user's dataset, in any of its ways
            return _Failure(
                f"reading sample {i} of {self.spec} failed: {type(exc).__name__}: {exc}",
                "data",
                "Fix the dataset's __getitem__, or remove the sample.",
            )


def _pair(item: Any, i: int, spec: str, pixels: bool = False) -> tuple[torch.Tensor, int, int]:
    """An item as ``(float tensor, int label, i)`` (``uint8`` for a source of ``pixels``), or a
    DataError saying which forms are accepted."""
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise DataError(
            f"sample {i} of {spec} is a {type(item).__name__}, not an (input, label) pair",
            field="data",
            fix=_FORMS,
        )
    x, y = item[0], item[1]
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor) and ((pixels and x.dtype == torch.uint8) or torch.is_floating_point(x)):
        x = x if x.dtype == torch.uint8 else x.float()
    else:
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else f"of type {type(x).__name__}"
        raise DataError(
            f"sample {i} of {spec}: the input is {kind}, not a float tensor", field="data.x", fix=_FORMS
        )
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not torch.is_floating_point(y):
        y = int(y.item())
    elif isinstance(y, np.integer):
        y = int(y)
    if not isinstance(y, int) or isinstance(y, bool):
        raise DataError(
            f"sample {i} of {spec}: the label is {type(y).__name__} {str(y)[:40]}, not an integer class index",
            field="data.y",
            fix=_FORMS,
        )
    return x, y, i


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor] | _Failure:
    failed = next((item for item in items if isinstance(item, _Failure)), None)
    if failed is not None:
        return failed
    first = items[0][0].shape
    odd = next((item for item in items if item[0].shape != first), None)
    if odd is not None:
        return _Failure(
            f"sample {odd[2]} has shape {tuple(odd[0].shape)} but sample {items[0][2]} has {tuple(first)}",
            "data.x",
            "Give every sample the same shape (for an image folder: set --image-size / data.image_size).",
        )
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items], dtype=torch.long)
