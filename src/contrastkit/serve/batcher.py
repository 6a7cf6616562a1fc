"""Micro-batching: requests from concurrent clients merged into one encode call run in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchStats", "EncodeFn", "MicroBatcher"]

EncodeFn = Callable[[list[str]], np.ndarray]
_log = logging.getLogger("contrastkit.serve")


@dataclass
class BatchStats:
    """Counters: requests served, texts encoded, encode calls (fewer than requests means merging), failures, drops."""

    requests: int = 0
    texts: int = 0
    encode_calls: int = 0
    largest_batch: int = 0
    failed: int = 0
    dropped: int = 0


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Collect requests for up to ``max_wait_s`` or ``max_batch`` texts, encode them in one call, answer each.

    ``encode_fn(texts) -> embeddings (n, d)`` runs in a single worker thread, so the event loop
    stays responsive and the model sees one batch at a time; requests arriving while a batch is
    encoding are merged into the next one. A request larger than ``max_batch`` is encoded alone
    (the HTTP layer caps request sizes before they get here). When a merged call fails, each
    request of the batch is encoded alone, so a request that breaks the model fails only itself.
    A request whose caller went away (its future cancelled) is dropped, never encoded.
    """

    def __init__(self, encode_fn: EncodeFn, *, max_batch: int = 256, max_wait_s: float = 0.005) -> None:
        self.encode_fn = encode_fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contrastkit-encode")

    async def start(self) -> None:
        """Start the collecting loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and the worker thread; requests still queued are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait().future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, computed in a batch shared with concurrent callers.

        Cancelling the awaiting task takes the request out of the queue before it is encoded.
        """
        if self._queue is None or self._task is None or self._task.done():
            raise RuntimeError("the micro-batcher is not running (MicroBatcher.start() not called or stopped)")
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    def _live(self, job: _Job) -> bool:
        if job.future.done():  # the caller went away (cancelled): never encode it
            self.stats.dropped += 1
            return False
        return True

    async def _collect(self, carry: _Job | None) -> tuple[list[_Job], _Job | None]:
        """One batch of live jobs (up to ``max_batch`` texts or ``max_wait_s``) and the job that did not fit."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        first = carry
        while first is None or not self._live(first):
            first = await self._queue.get()
        batch, size, carry = [first], len(first.texts), None
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            timeout = deadline - loop.time()
            try:
                job = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if not self._live(job):
                continue
            if size + len(job.texts) > self.max_batch:
                carry = job
                break
            batch.append(job)
            size += len(job.texts)
        return batch, carry

    def _encode_checked(self, texts: list[str]) -> np.ndarray:
        emb = np.asarray(self.encode_fn(texts), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(texts):
            raise RuntimeError(f"encode_fn returned shape {emb.shape} for {len(texts)} texts")
        return emb

    async def _encode_batch(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        batch = [job for job in batch if self._live(job)]  # went away while the batch was collected
        if not batch:
            return
        texts = [t for job in batch for t in job.texts]
        try:
            emb = await loop.run_in_executor(self._pool, self._encode_checked, texts)
        except Exception:  # noqa: BLE001 - isolate the culprit below
            if len(batch) > 1:
                for job in batch:  # one at a time: only the request that breaks the model fails
                    await self._encode_batch([job])
                return
            self.stats.failed += 1
            _log.exception("encoding a request of %d texts failed", len(texts))
            job = batch[0]
            if not job.future.done():
                job.future.set_exception(RuntimeError("encoding failed"))
            return
        self.stats.encode_calls += 1
        self.stats.requests += len(batch)
        self.stats.texts += len(texts)
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(emb[start:start + len(job.texts)])
            start += len(job.texts)

    async def _run(self) -> None:
        carry: _Job | None = None
        while True:
            batch: list[_Job] = []
            try:
                batch, carry = await self._collect(carry)
                await self._encode_batch(batch)
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive anything one batch does
                _log.exception("micro-batcher: unexpected error; failing the batch and continuing")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("encoding failed"))
