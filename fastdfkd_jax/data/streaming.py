"""Splits too large for memory: indexable example sources and a batch iterator over them.

A source is anything with ``len(source)`` and ``source[i] -> {'image': uint8 [H, W, C], 'label':
int or uint8 [H, W]}`` (one example, already resized to the dataset's fixed evaluation size);
``tfds.data_source`` results wrapped with a preprocessing function, folder readers and in-memory
arrays all qualify. :func:`iterate_batches` reads a source in order (optionally a given subset or
permutation of indices, e.g. one process's share), decoding each batch's examples on a thread pool
while the previous batch is consumed, and yields fixed-size batches: the last one is padded with
zeros and marked by ``mask``, so one compiled step serves every batch (the evaluator's convention).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from fastdfkd_jax.data import base

# Threads decoding examples: JPEG/PNG decoding and PIL resizing release the GIL.
DEFAULT_NUM_THREADS = 8

Example = Mapping[str, Any]


class ExampleSource(Protocol):
    """Random access to a split's examples (see the module docstring)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


class ArraySource:
    """An in-memory split (``{'image': [N, ...], 'label': [N, ...]}``) as an example source."""

    def __init__(self, split: Mapping[str, np.ndarray]):
        self._split = split

    def __len__(self) -> int:
        return len(self._split["label"])

    def __getitem__(self, index: int) -> Example:
        return {key: value[index] for key, value in self._split.items()}


class MappedSource:
    """``fn(source[i])`` for every index: preprocessing applied lazily, per example."""

    def __init__(self, source: ExampleSource, fn: Callable[[Example], Example]):
        self._source, self._fn = source, fn

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Example:
        return self._fn(self._source[int(index)])


def _stack(examples: Sequence[Example], batch_size: int) -> dict[str, np.ndarray]:
    """Stack examples into a batch of ``batch_size`` rows, zero-padded, with a ``mask``."""
    images = np.stack([np.asarray(e["image"]) for e in examples])
    labels = np.stack([np.asarray(e["label"]) for e in examples])
    n = len(examples)
    pad = batch_size - n
    if pad:
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
    split = base.as_split(images, labels)
    split["mask"] = np.arange(batch_size) < n
    return split


def iterate_batches(
    source: ExampleSource,
    batch_size: int,
    *,
    indices: Sequence[int] | None = None,
    pad_to: int | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the examples ``source[i]`` for ``i in indices`` as fixed-size batches.

    Args:
      source: an :class:`ExampleSource`.
      batch_size: rows per batch (a process's local batch in a multi-process run).
      indices: which examples, in which order; default ``range(len(source))``.
      pad_to: go on with empty (fully masked) batches until at least this many rows were yielded,
        so that every process runs as many steps as the one with the largest share.
      num_threads: decoding threads (1: decode in this thread).

    Yields:
      ``{'image': float32 [batch_size, H, W, C] in [0, 1], 'label': int32 [batch_size, ...],
      'mask': bool [batch_size]}``; padded rows are zero and ``mask`` is False there.

    Raises:
      ValueError: a non-positive ``batch_size``, or an empty selection (nothing to take the
        example shapes from).

    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    indices = list(range(len(source)) if indices is None else indices)
    if not indices:
        raise ValueError("iterate_batches needs at least one example")
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    total = max(pad_to or 0, len(indices))
    num_batches = -(-total // batch_size)

    def read(chunk):
        return [source[i] for i in chunk]

    if num_threads <= 1:
        for chunk in chunks:
            yield _stack(read(chunk), batch_size)
    else:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:

            def submit(chunk):
                return [pool.submit(source.__getitem__, i) for i in chunk]

            # One batch ahead: the pool decodes batch k + 1 while the caller uses batch k.
            pending = submit(chunks[0])
            for k in range(len(chunks)):
                current = pending
                if k + 1 < len(chunks):
                    pending = submit(chunks[k + 1])
                yield _stack([f.result() for f in current], batch_size)
    # Fully padded batches (shapes from the first example) up to `pad_to`.
    if num_batches > len(chunks):
        empty = _stack(read(indices[:1]), batch_size)
        empty = {key: np.zeros_like(value) for key, value in empty.items()}
        for _ in range(num_batches - len(chunks)):
            yield dict(empty)
