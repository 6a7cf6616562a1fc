"""Micro-batching: requests from concurrent clients merged into one encode call run in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BatchStats", "MicroBatcher"]

EncodeWithCounts = Callable[[list[str]], tuple[np.ndarray, list[int]]]


@dataclass
class BatchStats:
    """Counters: requests served, texts encoded and encode calls made (calls < requests means merging)."""

    requests: int = 0
    texts: int = 0
    encode_calls: int = 0
    largest_batch: int = 0


class MicroBatcher:
    """Collect requests for up to ``max_wait_s`` or ``max_batch`` texts, encode them in one call, answer each.

    ``encode_fn(texts) -> (embeddings (n, d), token counts)`` runs in a single worker thread, so
    the event loop stays responsive and the model sees one batch at a time; requests arriving
    while a batch is encoding are merged into the next one. A request larger than ``max_batch``
    is encoded alone (the HTTP layer caps request sizes before they get here).
    """

    def __init__(self, encode_fn: EncodeWithCounts, *, max_batch: int = 256, max_wait_s: float = 0.005) -> None:
        self.encode_fn = encode_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contrastkit-encode")

    async def start(self) -> None:
        """Start the collecting loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """Embeddings and token counts of ``texts``, computed in a batch shared with concurrent callers."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((list(texts), fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry: tuple[list[str], asyncio.Future[Any]] | None = None
        while True:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            batch = [first]
            size = len(first[0])
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                timeout = deadline - loop.time()
                try:
                    item = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(
                        self._queue.get(), timeout)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(item[0]) > self.max_batch:
                    carry = item
                    break
                batch.append(item)
                size += len(item[0])
            batch = [(t, f) for t, f in batch if not f.cancelled()]  # clients that went away
            if not batch:
                continue
            texts = [t for ts, _ in batch for t in ts]
            try:
                emb, counts = await loop.run_in_executor(self._pool, self.encode_fn, texts)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.stats.encode_calls += 1
            self.stats.requests += len(batch)
            self.stats.texts += len(texts)
            self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
            start = 0
            for ts, fut in batch:
                if not fut.done():
                    fut.set_result((emb[start:start + len(ts)], counts[start:start + len(ts)]))
                start += len(ts)
