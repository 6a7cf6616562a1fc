"""Sharded, resumable encoding with Ray Data: ``map_batches`` over a pool of actors that each hold an Encoder.

The output directory is the one :func:`contrastkit.encoding.encode_sharded` writes (same shards,
row files, markers, manifest and recorded settings), so the two engines can resume each other's
work and :func:`~contrastkit.encoding.load_shards` reads either.

How it runs:

1. The driver streams the input with the same reader as ``contrastkit encode``
   (:func:`~contrastkit.encoding.sharded.iter_rows`), so row ``k`` belongs to shard ``k // shard_size``.
   A shard that is already complete with exactly these rows is kept (``resume=True``); every other
   shard is cut into chunks of ``max(64 * batch_size, 4096)`` rows (the local engine's encode calls),
   and each chunk is put into Ray's object store as one Arrow block (shard, position, file, line,
   text). The driver keeps only object references; Ray spills blocks to disk beyond its store.
2. ``Dataset.map_batches`` runs :class:`EncodeActor` over a pool of ``workers`` actors (one CPU
   each, torch threads = CPUs // workers), one block per call. Ray Data's actor pools restart dead
   actors and retry their calls (``max_restarts=-1``, ``max_task_retries=-1``): a killed actor is
   replaced, reloads the model, and its lost blocks are encoded again.
3. The driver is the only writer. It gathers each shard's vectors by position and, once the shard is
   whole, writes it with the same atomic files as the local engine, then refreshes the manifest. A
   driver killed at any instant leaves only complete shards (or none) behind; a rerun with
   ``resume=True`` verifies them and sends only the rest to Ray.

Without ``address`` the driver starts a local Ray instance (``workers`` CPUs, a capped object
store, no dashboard) and stops it at the end; with one it joins that cluster. An already
initialised Ray (``ray.is_initialized()``) is used as it is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .sharded import (
    DTYPES,
    ShardedEncodeResult,
    _completed,
    _shard_matches,
    _shard_name,
    _write_manifest,
    iter_rows,
    prepare_output,
    save_shard,
)

__all__ = ["EncodeActor", "encode_ray"]


class EncodeActor:
    """A Ray Data actor: loads the model once, then turns blocks of (shard, pos, file, line, text) into vectors."""

    def __init__(self, model: str, batch_size: int, normalize: bool | None, precision: str, threads: int) -> None:
        import torch

        from ..encoders import Encoder

        torch.set_num_threads(threads)
        self.encoder = Encoder.from_pretrained(model)
        self.batch_size, self.normalize, self.precision = batch_size, normalize, precision

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode one block; the location columns pass through, ``seconds`` is each row's share of the time."""
        t0 = time.perf_counter()
        emb = self.encoder.encode([str(t) for t in batch["text"]], batch_size=self.batch_size,
                                  normalize=self.normalize, precision=self.precision)
        emb = np.ascontiguousarray(np.asarray(emb, dtype=np.float32))
        n = len(emb)
        return {"shard": batch["shard"], "pos": batch["pos"], "file": batch["file"], "line": batch["line"],
                "vector": emb, "seconds": np.full(n, (time.perf_counter() - t0) / max(n, 1))}


def _import_ray() -> Any:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the ray engine needs Ray Data ({e}): pip install 'contrastkit[ray]'") from None
    return ray


def _start_ray(workers: int, address: str | None, object_store_mb: int | None) -> bool:
    """Initialise Ray unless it already is; returns whether this call started it (and so must stop it)."""
    ray = _import_ray()

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting home
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        store = None if object_store_mb is None else int(object_store_mb) * 1024 ** 2
        # worker_niceness 0: Ray's default (15) leaves actors only the CPU time other processes do not want
        ray.init(num_cpus=workers, object_store_memory=store, include_dashboard=False, log_to_driver=False,
                 _system_config={"worker_niceness": 0})
    return True


def _block(shard: int, texts: list[str], where: list[tuple[int, int]], start: int) -> Any:
    """One Arrow block of a shard's rows ``start ..`` (their position in the shard, file, line and text)."""
    import pyarrow as pa

    loc = np.asarray(where, dtype=np.int64).reshape(-1, 2)
    return pa.table({"shard": pa.array(np.full(len(texts), shard, dtype=np.int64)),
                     "pos": pa.array(np.arange(start, start + len(texts), dtype=np.int64)),
                     "file": pa.array(loc[:, 0]), "line": pa.array(loc[:, 1]), "text": pa.array(texts, pa.string())})


def encode_ray(model: str | os.PathLike[str], input: str | os.PathLike[str], output: str | os.PathLike[str], *,
               workers: int = 2, shard_size: int = 100_000, batch_size: int = 64, normalize: bool | None = None,
               precision: str = "auto", dtype: str = "float32", text_field: str = "text", resume: bool = False,
               show_progress: bool = True, address: str | None = None,
               object_store_mb: int | None = 256) -> ShardedEncodeResult:
    """Encode ``input`` into ``output`` (the layout of :func:`encode_sharded`) with Ray Data over ``workers`` actors.

    ``model`` is a name or path (each actor loads its own copy). ``address`` joins a running Ray
    cluster; otherwise a local instance with ``workers`` CPUs and ``object_store_mb`` MiB of object
    store is started for the call.
    """
    t0 = time.perf_counter()
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError("the ray engine needs the model as a name or path (each actor loads its own copy)")
    if workers < 1:
        raise ConfigError(f"workers must be positive, got {workers}")
    files, out, settings = prepare_output(model, input, output, shard_size=shard_size, batch_size=batch_size,
                                          normalize=normalize, precision=precision, dtype=dtype,
                                          text_field=text_field)
    if not resume and _completed(out):
        first = next(iter(_completed(out)))
        raise ConfigError(f"{out}: already holds {len(_completed(out))} completed shard(s) (first "
                          f"{_shard_name(first)}); pass --resume to continue, or use another directory")
    ray = _import_ray()

    started = False
    try:
        # 1. read: keep verified shards, put the others' chunks into the object store
        chunk = max(batch_size * 64, 4096)
        refs: list[Any] = []
        sizes: dict[int, int] = {}
        skipped = row = 0
        texts: list[str] = []
        where: list[tuple[int, int]] = []

        def finish(i: int) -> None:
            nonlocal skipped, texts, where, started
            if resume and _shard_matches(out, i, where):
                skipped += 1
            else:
                if not ray.is_initialized():  # only once some shard needs encoding
                    started = _start_ray(workers, address, object_store_mb)
                sizes[i] = len(texts)
                refs.extend(ray.put(_block(i, texts[s:s + chunk], where[s:s + chunk], s))
                            for s in range(0, len(texts), chunk))
            texts, where = [], []

        for fi, line, text in iter_rows(files, text_field=text_field):
            texts.append(text)
            where.append((fi, line))
            row += 1
            if row % shard_size == 0:
                finish(row // shard_size - 1)
        if texts:
            finish(row // shard_size)
        if row == 0:
            raise DataError("input has no texts", path=str(input))
        written, encoded = _run(refs, sizes, out, settings, workers=workers, batch_size=batch_size,
                                normalize=normalize, precision=precision, dtype=dtype, model=str(model),
                                shard_size=shard_size, show_progress=show_progress) if refs else (0, 0)
    finally:
        if started:
            ray.shutdown()
    manifest = _write_manifest(out, settings, row)
    return ShardedEncodeResult(str(out), written, skipped, encoded, row, -(-row // shard_size),
                               bool(manifest["complete"]), round(time.perf_counter() - t0, 3))


def _run(refs: list[Any], sizes: dict[int, int], out: Path, settings: dict[str, Any], *, workers: int,
         batch_size: int, normalize: bool | None, precision: str, dtype: str, model: str, shard_size: int,
         show_progress: bool) -> tuple[int, int]:
    """Encode the blocks on the actor pool and write each shard once all its rows are back; (shards, rows)."""
    ray = _import_ray()

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one bar, ours
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Ray Data's actor pools restart dead actors and retry their calls (max_restarts=-1, max_task_retries=-1)
    ds = ray.data.from_arrow_refs(refs).map_batches(
        EncodeActor, batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1, fn_constructor_kwargs={"model": model, "batch_size": batch_size, "normalize": normalize,
                                           "precision": precision, "threads": threads})
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"encode (ray, {workers} actors)", unit="text", total=sum(sizes.values()),
                   dynamic_ncols=True)
    partial: dict[int, dict[str, Any]] = {}
    written = encoded = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            vectors = np.asarray(batch["vector"])
            for i in np.unique(batch["shard"]).tolist():
                sel = batch["shard"] == i
                n = sizes[i]
                if i not in partial:
                    partial[i] = {"emb": np.empty((n, vectors.shape[1]), DTYPES[dtype]),
                                  "rows": np.empty((n, 2), np.int64), "seen": np.zeros(n, bool), "seconds": 0.0}
                p, pos = partial[i], batch["pos"][sel]
                p["emb"][pos] = vectors[sel]
                p["rows"][pos, 0], p["rows"][pos, 1] = batch["file"][sel], batch["line"][sel]
                p["seen"][pos] = True
                p["seconds"] += float(batch["seconds"][sel].sum())
                if p["seen"].all():
                    save_shard(out, i, p["emb"], p["rows"], i * shard_size, seconds=p["seconds"])
                    _write_manifest(out, settings, None)
                    del partial[i]
                    written += 1
                    encoded += n
            if bar is not None:
                bar.update(len(vectors))
    finally:
        if bar is not None:
            bar.close()
    if partial:
        raise DataError(f"ray returned incomplete shards {sorted(partial)[:5]}", path=str(out))
    return written, encoded
