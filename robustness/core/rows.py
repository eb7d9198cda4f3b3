"""The inputs of an evaluation set by position, read when asked: what the audit holds instead of
the whole set.

``rows[index]`` is a float32 CPU tensor of the samples at ``index`` (a long tensor, a list or a
slice of positions, in that order) and :meth:`SampleRows.batches` reads a set of positions batch
by batch. Data already in memory (``builtin:``, a compressed ``.npz``, a factory's arrays) is one
tensor, indexed as before; data read lazily (an image folder, a memory-mapped array, a factory's
``torch.utils.data.Dataset``: a :class:`~robustness.core.stream.DataStream` that is not in memory)
goes back to its source on every read, so that whoever holds the rows keeps only per-sample
scalars and the batches in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from robustness.core.stream import DataStream, TensorStream


class SampleRows:
    """The inputs of ``n`` samples of one shape, by position (see the module docstring)."""

    def __init__(self, source: DataStream | torch.Tensor) -> None:
        self.stream = None if isinstance(source, torch.Tensor) else source
        # In memory: the tensor itself, so that reading a row is an index, as it always was.
        self.tensor: torch.Tensor | None = None
        if isinstance(source, torch.Tensor):
            self.tensor = source.detach().cpu().float()
        elif isinstance(source, TensorStream):
            self.tensor = source.dataset.x.detach().cpu().float()
        self.n = len(source)
        head = self.tensor[:1] if self.tensor is not None else source.peek(1)
        self.sample_shape = tuple(head.shape[1:])

    @property
    def in_memory(self) -> bool:
        return self.tensor is not None

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, *self.sample_shape))

    def dim(self) -> int:
        return 1 + len(self.sample_shape)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: torch.Tensor | Sequence[int] | slice) -> torch.Tensor:
        """The inputs at ``index``, in that order."""
        if self.tensor is not None:
            return self.tensor[index]
        positions = self._positions(index)
        if positions.numel() == 0:
            return torch.empty((0, *self.sample_shape))
        return next(self.batches(positions, positions.numel()))[1]

    def batches(
        self,
        index: torch.Tensor,
        batch_size: int,
        *,
        numbers: Sequence[int] | None = None,
        pin_memory: bool = False,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(k, inputs)`` of batch ``k`` of the positions ``index`` cut into ``batch_size`` (batch
        ``k`` holds ``index[k * batch_size : (k + 1) * batch_size]``), for each ``k`` of
        ``numbers`` (default: all), in that order; read from the source in one pass."""
        index = torch.as_tensor(index, dtype=torch.long)
        count = -(-index.numel() // batch_size)
        chosen = range(count) if numbers is None else [k for k in numbers if k < count]
        if self.tensor is not None:
            for k in chosen:
                yield k, self.tensor[index[k * batch_size : (k + 1) * batch_size]]
            return
        assert self.stream is not None
        for batch in self.stream.subset(index).batches(
            batch_size, numbers=list(chosen), pin_memory=pin_memory
        ):
            yield batch.number, batch.x.float()

    def labels_and_sha256(self, batch_size: int) -> tuple[torch.Tensor, str]:
        """Every label, and the hash of the inputs and labels (``Dataset.sha256``'s, read in one
        pass for a stream)."""
        if self.tensor is not None:
            dataset: Any = getattr(self.stream, "dataset", None)
            if dataset is None:
                raise ValueError("rows made from a bare tensor have no labels")
            return dataset.y.detach().cpu().long(), dataset.sha256()
        assert self.stream is not None
        h = hashlib.sha256()
        y = torch.empty(self.n, dtype=torch.long)
        for batch in self.stream.batches(batch_size):
            h.update(batch.x.float().contiguous().numpy().tobytes())
            y[batch.index] = batch.y.long()
        h.update(y.numpy().tobytes())
        return y, h.hexdigest()

    def _positions(self, index: torch.Tensor | Sequence[int] | slice) -> torch.Tensor:
        if isinstance(index, slice):
            return torch.arange(self.n)[index]
        return torch.as_tensor(index, dtype=torch.long).reshape(-1)
