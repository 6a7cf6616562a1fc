"""Batch sources: deterministic, resumable orderings of training examples.

Every source yields the batches of an epoch from a position, so a resumed run sees
exactly the batches an uninterrupted run would have seen. The order depends only on
``(seed, epoch)``, never on global RNG state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


class BatchSource(Protocol[T]):
    """Resumable batches: ``batches_per_epoch`` and ``batches(epoch, start)``."""

    @property
    def batches_per_epoch(self) -> int: ...

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]: ...


class RandomBatches(Generic[T]):
    """In-memory examples shuffled per epoch with ``seed + epoch``; the last partial batch is dropped
    when it would hold a single example (InfoNCE needs at least two)."""

    def __init__(self, examples: Sequence[T], batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        if len(examples) < 2:
            raise ValueError(f"need at least 2 training examples, got {len(examples)}")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in one epoch."""
        full, rest = divmod(len(self.examples), self.batch_size)
        return full + (1 if rest > 1 else 0)

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]:
        """Yield batches of ``epoch`` from batch index ``start`` on."""
        n = len(self.examples)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, self.batches_per_epoch):
            yield [self.examples[i] for i in order[b * self.batch_size:(b + 1) * self.batch_size]]


class StreamingBatches(Generic[T]):
    """Examples read lazily from ``open_stream()`` (files larger than memory), shuffled within a buffer.

    ``count`` is the number of examples in the stream (one counting pass is made when omitted).
    Resuming at batch ``start`` re-reads and skips the consumed part of the stream.
    """

    def __init__(self, open_stream: Callable[[], Iterable[T]], batch_size: int, seed: int = 0,
                 buffer_size: int = 10_000, count: int | None = None) -> None:
        self.open_stream = open_stream
        self.batch_size = batch_size
        self.seed = seed
        self.buffer_size = buffer_size
        self.count = count if count is not None else sum(1 for _ in open_stream())
        if self.count < 2:
            raise ValueError(f"need at least 2 training examples, got {self.count}")

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in one epoch."""
        full, rest = divmod(self.count, self.batch_size)
        return full + (1 if rest > 1 else 0)

    def _shuffled(self, epoch: int) -> Iterator[T]:
        rng = random.Random(f"{self.seed}-{epoch}")
        buf: list[T] = []
        for item in self.open_stream():
            buf.append(item)
            if len(buf) >= self.buffer_size:
                j = rng.randrange(len(buf))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]:
        """Yield batches of ``epoch`` from batch index ``start`` on."""
        batch: list[T] = []
        index = 0
        for item in self._shuffled(epoch):
            batch.append(item)
            if len(batch) == self.batch_size:
                if index >= start:
                    yield batch
                index += 1
                batch = []
        if len(batch) > 1 and index >= start:
            yield batch
