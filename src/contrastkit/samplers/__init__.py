"""Batch sources: deterministic, resumable orderings of training examples.

Every source yields the batches of an epoch from a position, so a resumed run sees
exactly the batches an uninterrupted run would have seen. The order depends only on
``(seed, epoch)``, never on global RNG state.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar

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

    def index_batches(self, epoch: int, start: int = 0) -> Iterator[Sequence[int]]:
        """The example indices of the batches of ``epoch`` from batch index ``start`` on."""
        n = len(self.examples)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        for b in range(start, self.batches_per_epoch):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]:
        """Yield batches of ``epoch`` from batch index ``start`` on."""
        for idx in self.index_batches(epoch, start):
            yield [self.examples[i] for i in idx]


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


class NoDuplicatesBatches(Generic[T]):
    """Shuffled batches in which no text occurs twice (a repeated text would be its own false negative).

    Duplicates are tracked on the input texts, not on embeddings. An example whose text is
    already in the batch being filled waits for a later batch (as sentence-transformers'
    NoDuplicatesBatchSampler does); at the end of an epoch, examples that can only form a batch
    of one are left out of that epoch. The order depends only on ``(seed, epoch)``.
    """

    def __init__(self, examples: Sequence[T], batch_size: int, seed: int = 0,
                 texts_of: Callable[[T], Iterable[str]] | None = None) -> None:
        if len(examples) < 2:
            raise ValueError(f"need at least 2 training examples, got {len(examples)}")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.texts_of = texts_of or (lambda ex: getattr(ex, "texts", (str(ex),)))
        self._cache: dict[int, list[list[int]]] = {}

    def _plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._cache:
            pending = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)).tolist()
            plan: list[list[int]] = []
            while pending:
                batch: list[int] = []
                seen: set[str] = set()
                rest: list[int] = []
                for i in pending:
                    texts = set(self.texts_of(self.examples[i]))
                    if len(batch) < self.batch_size and not (texts & seen):
                        batch.append(i)
                        seen |= texts
                    else:
                        rest.append(i)
                if len(batch) > 1:
                    plan.append(batch)
                pending = rest if len(batch) > 1 else []
            self._cache = {epoch: plan}
        return self._cache[epoch]

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in the first epoch (later epochs may differ by a batch)."""
        return len(self._plan(0))

    def index_batches(self, epoch: int, start: int = 0) -> Iterator[Sequence[int]]:
        """The example indices of the batches of ``epoch`` from batch index ``start`` on."""
        yield from self._plan(epoch)[start:]

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]:
        """Yield duplicate-free batches of ``epoch`` from batch index ``start`` on."""
        for idx in self.index_batches(epoch, start):
            yield [self.examples[i] for i in idx]


def split_sizes(n: int, world: int) -> list[int]:
    """Rows of a global batch of ``n`` given to each of ``world`` ranks (as even as possible, in rank order)."""
    return [n // world + (1 if r < n % world else 0) for r in range(world)]


class ShardBatch(list):  # type: ignore[type-arg]
    """One rank's rows of a global batch: rows ``[offset, offset + sizes[rank])`` of it.

    ``sizes`` are the rows of every rank (``split_sizes``), so cross-device negatives know the global layout.
    """

    def __init__(self, rows: Iterable[Any], sizes: list[int], rank: int) -> None:
        super().__init__(rows)
        self.sizes = sizes
        self.rank = rank

    @property
    def global_size(self) -> int:
        """Rows of the global batch this shard belongs to."""
        return sum(self.sizes)

    @property
    def offset(self) -> int:
        """Index of this shard's first row in the global batch."""
        return sum(self.sizes[:self.rank])


class ShardedBatches(Generic[T]):
    """This rank's share of every global batch of ``source`` (``train.batch_size`` stays the global batch).

    Global batch ``b`` of an epoch is split in rank order with :func:`split_sizes`; rank ``r`` gets the
    ``r``-th slice as a :class:`ShardBatch`, so the ranks' shards are disjoint and together are exactly the
    one-process batch. Sources that plan batches as example indices (``index_batches``: random, no-duplicates,
    grouped) are read only at this rank's rows (an example list that loads lazily is touched only there);
    others (streaming) are read in full by every rank, each keeping its slice, since the buffer shuffle of a
    stream needs the whole stream. The position is the global ``(epoch, batch)``, the same on every rank, so
    a checkpoint resumes every rank exactly where it was.
    """

    def __init__(self, source: BatchSource[T], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.source = source
        self.rank = rank
        self.world = world

    @property
    def batches_per_epoch(self) -> int:
        """Global batches in one epoch (every rank takes one step per global batch)."""
        return self.source.batches_per_epoch

    def _split(self, n: int) -> list[int]:
        sizes = split_sizes(n, self.world)
        if min(sizes) == 0:
            raise ValueError(f"a batch of {n} examples cannot be split across {self.world} ranks; "
                             f"use train.batch_size >= {self.world}")
        return sizes

    def batches(self, epoch: int, start: int = 0) -> Iterator[ShardBatch]:
        """This rank's rows of each global batch of ``epoch`` from global batch index ``start`` on."""
        plan = getattr(self.source, "index_batches", None)
        examples = getattr(self.source, "examples", None)
        if plan is not None and examples is not None:
            for idx in plan(epoch, start):
                sizes = self._split(len(idx))
                lo = sum(sizes[:self.rank])
                yield ShardBatch((examples[i] for i in idx[lo:lo + sizes[self.rank]]), sizes, self.rank)
            return
        for batch in self.source.batches(epoch, start):
            sizes = self._split(len(batch))
            lo = sum(sizes[:self.rank])
            yield ShardBatch(batch[lo:lo + sizes[self.rank]], sizes, self.rank)


from .grouped import GroupedBatches, community_groups, kmeans_groups  # noqa: E402

__all__ = ["BatchSource", "GroupedBatches", "NoDuplicatesBatches", "RandomBatches", "ShardBatch", "ShardedBatches",
           "StreamingBatches", "community_groups", "kmeans_groups", "split_sizes"]
