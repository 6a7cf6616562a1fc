"""Streaming, sharded, resumable encoding of corpora of any size.

The input (a text/JSONL/CSV/TSV file, or a directory of them read in sorted path order) is
streamed row by row; row ``k`` of the stream belongs to shard ``k // shard_size``. A process
with rank ``R`` of ``W`` encodes the shards ``i`` with ``i % W == R`` and skips the others'
rows without keeping them, so memory holds one shard at most. For each shard it writes, in
``OUT``:

* ``shard-00000.npy`` -- the ``(n, dim)`` embeddings;
* ``shard-00000.rows.npy`` -- ``(n, 2)`` int64: each row's input file index (into
  ``manifest.json``'s ``inputs``) and line number, so every vector leads back to its text;
* ``shard-00000.json`` -- the completion marker (rows, dim), written last.

Every file is written to a temporary name and renamed (atomic). ``manifest.json`` holds the
settings, the input files and the completed shards; it is rebuilt from the markers after each
shard, so processes and machines sharing ``OUT`` never lose each other's work. A resumed run
(``resume=True``) skips shards whose marker and files agree on the row count and re-encodes the
rest; a run with other settings than those recorded is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.examples import ReadStats
from ..errors import ConfigError, DataError
from ..fsutil import atomic_save_npy, atomic_write_bytes

logger = logging.getLogger("contrastkit.encoding")

MANIFEST = "manifest.json"
SETTINGS = "encode_settings.json"
DTYPES = {"float32": np.float32, "float16": np.float16}
_READABLE = {".txt", ".text", ".jsonl", ".ndjson", ".json", ".csv", ".tsv"}


@dataclass
class ShardedEncodeResult:
    """What one call of :func:`encode_sharded` / :func:`run_sharded` did."""

    output: str
    shards_written: int
    shards_skipped: int
    rows_encoded: int
    total_rows: int
    num_shards: int
    complete: bool
    seconds: float


# -- input ----------------------------------------------------------------------------------------
def input_files(path: str | os.PathLike[str]) -> list[Path]:
    """The file itself, or every text/JSONL/CSV/TSV file under a directory (recursively, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _READABLE)
        if not files:
            raise DataError(f"directory holds no input files ({', '.join(sorted(_READABLE))})", path=str(p))
        return files
    raise DataError("input not found", path=str(p))


def iter_rows(files: list[Path], *, text_field: str = "text") -> Iterator[tuple[int, int, str]]:
    """Stream ``(file index, line number, text)``; text files give one text per non-blank line,
    JSONL/CSV/TSV the ``text_field`` of each record. Bad rows raise DataError naming file:line."""
    from ..data.readers import infer_format, iter_examples

    for fi, f in enumerate(files):
        fmt = infer_format(str(f))
        stats = ReadStats()
        columns = None if fmt == "text" else [text_field]
        for ex in iter_examples(f, format=fmt, columns=columns, stats=stats):  # type: ignore[arg-type]
            yield fi, stats.lines_read, ex.texts[0]


# -- files ----------------------------------------------------------------------------------------
def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _shard_ok(out: Path, i: int, dim: int | None = None) -> int | None:
    """Row count of a completed shard whose marker and files agree, else None."""
    name = _shard_name(i)
    try:
        marker = json.loads((out / f"{name}.json").read_text())
        emb = np.load(out / f"{name}.npy", mmap_mode="r")
        rows = np.load(out / f"{name}.rows.npy", mmap_mode="r")
    except (OSError, ValueError):
        return None
    n = marker.get("rows")
    if emb.ndim != 2 or emb.shape[0] != n or rows.shape != (n, 2) or (dim is not None and emb.shape[1] != dim):
        return None
    return int(n)


def _completed(out: Path) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    for m in out.glob("shard-*.json"):
        try:
            marker = json.loads(m.read_text())
            done[int(marker["shard"])] = marker
        except (OSError, ValueError, KeyError):
            continue
    return dict(sorted(done.items()))


def _write_manifest(out: Path, settings: dict[str, Any], total_rows: int | None) -> dict[str, Any]:
    done = _completed(out)
    manifest: dict[str, Any] = {**settings, "completed": {_shard_name(i): m for i, m in done.items()}}
    old = _read_json(out / MANIFEST) or {}
    if total_rows is None:
        total_rows = old.get("total_rows")
    if total_rows is not None:
        num = -(-total_rows // settings["shard_size"])
        manifest["total_rows"] = total_rows
        manifest["num_shards"] = num
        manifest["complete"] = all(i in done for i in range(num))
    else:
        manifest["complete"] = False
    _atomic_json(out / MANIFEST, manifest)
    return manifest


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Record the settings on first use of ``out``; refuse a run whose settings differ."""
    recorded = _read_json(out / SETTINGS)
    if recorded is None:
        _atomic_json(out / SETTINGS, settings)
        return
    diff = [k for k in settings if recorded.get(k) != settings[k]]
    if diff:
        pairs = "; ".join(f"{k}: {recorded.get(k)!r} there, {settings[k]!r} now" for k in diff)
        raise ConfigError(f"{out}: holds shards encoded with other settings ({pairs}); "
                          "use another output directory")


def encode_settings(model: Any, files: list[Path], *, shard_size: int, text_field: str, normalize: bool | None,
                    precision: str, dtype: str) -> dict[str, Any]:
    """The settings recorded in ``encode_settings.json``: every engine writing ``OUT`` must agree on them."""
    if isinstance(model, (str, os.PathLike)):  # the same model dir compares equal however it is spelled
        model_name = str(Path(model).resolve()) if Path(model).exists() else str(model)
    else:
        model_name = f"<{type(model).__name__} object>"
    return {"model": str(model_name), "inputs": [str(f.resolve()) for f in files], "shard_size": shard_size,
            "text_field": text_field, "normalize": normalize, "precision": precision, "dtype": dtype,
            "format": "npy", "format_version": 1}


# -- the work -------------------------------------------------------------------------------------
def prepare_output(model: Any, input: str | os.PathLike[str], output: str | os.PathLike[str], *, shard_size: int,
                   batch_size: int, normalize: bool | None, precision: str, dtype: str,
                   text_field: str) -> tuple[list[Path], Path, dict[str, Any]]:
    """Check an encode job's sizes and dtype, create ``output`` and check it holds no other job's shards:
    (input files, output directory, settings)."""
    if shard_size < 1 or batch_size < 1:
        raise ConfigError(f"shard_size and batch_size must be positive, got {shard_size} and {batch_size}")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    files = input_files(input)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    settings = encode_settings(model, files, shard_size=shard_size, text_field=text_field, normalize=normalize,
                               precision=precision, dtype=dtype)
    _check_settings(out, settings)
    return files, out, settings


def encode_sharded(model: Any, input: str | os.PathLike[str], output: str | os.PathLike[str], *,
                   shard_size: int = 100_000, batch_size: int = 64, normalize: bool | None = None,
                   precision: str = "auto", dtype: str = "float32", text_field: str = "text",
                   resume: bool = False, rank: int | None = None, world_size: int | None = None,
                   show_progress: bool = True, progress_position: int = 0) -> ShardedEncodeResult:
    """Encode the shards of ``input`` that belong to ``rank`` (of ``world_size``) into ``output``.

    ``model`` is a model name/path or an encoder with ``encode``. ``rank``/``world_size`` default
    to the ``RANK``/``WORLD_SIZE`` environment variables (torchrun), else 0/1.
    """
    t0 = time.perf_counter()
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    files, out, settings = prepare_output(model, input, output, shard_size=shard_size, batch_size=batch_size,
                                          normalize=normalize, precision=precision, dtype=dtype,
                                          text_field=text_field)
    mine = lambda i: i % world_size == rank  # noqa: E731
    if not resume:
        clash = sorted(i for i in _completed(out) if mine(i))
        if clash:
            raise ConfigError(f"{out}: already holds {len(clash)} completed shard(s) of this rank "
                              f"(first {_shard_name(clash[0])}); pass --resume to continue, or use another directory")
    encoder = _load(model)

    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"encode rank {rank}/{world_size}" if world_size > 1 else "encode", unit="text",
                   position=progress_position, dynamic_ncols=True)
    written = skipped = encoded = 0
    texts: list[str] = []
    where: list[tuple[int, int]] = []
    row = 0

    def finish(i: int) -> None:
        """Shard ``i`` has all its rows: keep a verified earlier copy (resume) or encode and write it."""
        nonlocal written, skipped, encoded, texts, where
        if resume and _shard_matches(out, i, where):
            skipped += 1
            if bar is not None:
                bar.update(len(texts))
        else:
            _write_shard(out, i, encoder, texts, where, i * shard_size, batch_size=batch_size,
                         normalize=normalize, precision=precision, dtype=DTYPES[dtype], bar=bar)
            _write_manifest(out, settings, None)
            written += 1
            encoded += len(texts)
        texts, where = [], []

    try:
        for fi, line, text in iter_rows(files, text_field=text_field):
            shard = row // shard_size
            if mine(shard):
                texts.append(text)
                where.append((fi, line))
            row += 1
            if row % shard_size == 0 and mine(shard):
                finish(shard)
        if texts:
            finish(row // shard_size)
    finally:
        if bar is not None:
            bar.close()
    if row == 0:
        raise DataError("input has no texts", path=str(input))
    manifest = _write_manifest(out, settings, row)
    return ShardedEncodeResult(str(out), written, skipped, encoded, row, -(-row // shard_size),
                               bool(manifest["complete"]), round(time.perf_counter() - t0, 3))


def _shard_matches(out: Path, i: int, where: list[tuple[int, int]]) -> bool:
    """Whether shard ``i`` is complete on disk with exactly these rows (count and locations)."""
    n = _shard_ok(out, i)
    if n != len(where):
        return False
    rows = np.load(out / f"{_shard_name(i)}.rows.npy")
    return bool(np.array_equal(rows, np.asarray(where, dtype=np.int64).reshape(-1, 2)))


def _load(model: Any) -> Any:
    if isinstance(model, (str, os.PathLike)):
        from ..encoders import Encoder

        return Encoder.from_pretrained(str(model))
    if not hasattr(model, "encode"):
        raise ConfigError(f"model must be a name/path or an encoder with encode(), got {type(model).__name__}")
    return model


def _write_shard(out: Path, i: int, encoder: Any, texts: list[str], where: list[tuple[int, int]], first_row: int,
                 *, batch_size: int, normalize: bool | None, precision: str, dtype: Any, bar: Any) -> None:
    t0 = time.perf_counter()
    chunk = max(batch_size * 64, 4096)
    parts = []
    for s in range(0, len(texts), chunk):
        emb = encoder.encode(texts[s:s + chunk], batch_size=batch_size, normalize=normalize, precision=precision)
        parts.append(np.asarray(emb, dtype=dtype))
        if bar is not None:
            bar.update(len(parts[-1]))
    save_shard(out, i, np.concatenate(parts), where, first_row, seconds=time.perf_counter() - t0)


def save_shard(out: Path, i: int, emb: np.ndarray, where: list[tuple[int, int]] | np.ndarray, first_row: int, *,
               seconds: float) -> None:
    """Write shard ``i``'s embeddings, row locations and (last) its completion marker, each atomically."""
    name = _shard_name(i)
    atomic_save_npy(out / f"{name}.npy", emb)
    atomic_save_npy(out / f"{name}.rows.npy", np.asarray(where, dtype=np.int64).reshape(-1, 2))
    _atomic_json(out / f"{name}.json", {"shard": i, "rows": int(emb.shape[0]), "first_row": first_row,
                                        "dim": int(emb.shape[1]), "seconds": round(seconds, 3)})


# -- several local processes ----------------------------------------------------------------------
def _worker(kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return asdict(encode_sharded(**kwargs))


def run_sharded(model: Any, input: str | os.PathLike[str], output: str | os.PathLike[str], *, workers: int = 1,
                rank: int | None = None, world_size: int | None = None, **kwargs: Any) -> ShardedEncodeResult:
    """:func:`encode_sharded` over ``workers`` local processes; with ``rank``/``world_size`` the
    machine's shards are split further (worker ``w`` of machine ``R`` is rank ``R*workers + w``)."""
    if workers < 1:
        raise ConfigError(f"workers must be positive, got {workers}")
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if workers == 1:
        return encode_sharded(model, input, output, rank=rank, world_size=world_size, **kwargs)
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError("workers > 1 needs the model as a name or path (each process loads its own copy)")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [dict(model=str(model), input=str(input), output=str(output), rank=rank * workers + w,
                 world_size=world_size * workers, progress_position=w, **kwargs) for w in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        results = [f.result() for f in [pool.submit(_worker, job, threads) for job in jobs]]
    manifest = _read_json(Path(output) / MANIFEST) or {}
    return ShardedEncodeResult(str(output), sum(r["shards_written"] for r in results),
                               sum(r["shards_skipped"] for r in results), sum(r["rows_encoded"] for r in results),
                               results[0]["total_rows"], results[0]["num_shards"], bool(manifest.get("complete")),
                               round(time.perf_counter() - t0, 3))


def load_shards(output: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """All shards of a complete output directory, concatenated in input order."""
    out = Path(output)
    manifest = _read_json(out / MANIFEST)
    if manifest is None:
        raise DataError("no manifest.json: not a sharded encode output", path=str(out))
    if not manifest.get("complete"):
        raise DataError("encode output is incomplete (run the encode again with --resume)", path=str(out))
    parts = [np.load(out / f"{_shard_name(i)}.npy", mmap_mode="r" if mmap else None)
             for i in range(manifest["num_shards"])]
    return np.concatenate(parts)
