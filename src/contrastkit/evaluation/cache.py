"""Embedding cache: encode every distinct sentence once per model, in memory and optionally on disk.

:class:`EmbeddingCache` wraps an encode function (texts -> ``(n, d)`` array) and is itself
one, so it can be passed to every evaluation of a run: STS, transfer, clustering and retrieval
share many sentences (TREC, SST, MRPC and STS-B appear in several suites).

Keys are BLAKE2b-128 hashes of the UTF-8 text. With ``cache_dir`` the rows are also kept on
disk under ``<cache_dir>/<fingerprint>/``, without pickle:

* ``shard-<time>-<pid>-<n>.npy``: one ``(rows, d)`` array per flush (``np.save``);
* ``shard-<time>-<pid>-<n>.json``: its index ``{"keys": [hash, ...], "dim", "dtype", "fingerprint"}``,
  written (atomically) after the array, so a shard counts only once it is complete;
* ``model.json``: what the fingerprint stands for.

Shards are never rewritten, so concurrent runs with the same fingerprint only add shards.
The fingerprint must change whenever the embeddings would: :func:`model_fingerprint` hashes a
model directory's path and its weight files' names, sizes and modification times, plus any
``extra`` settings (pooling, normalisation, prompt) the caller names.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.errors import ConfigError, DataError

__all__ = ["EmbeddingCache", "model_fingerprint", "text_key"]

EncodeFn = Callable[[list[str]], Any]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".gguf", ".npy")


def text_key(text: str) -> str:
    """The cache key of a text: BLAKE2b-128 of its UTF-8 bytes, hex."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def model_fingerprint(model: str | os.PathLike[str], extra: str | dict[str, Any] = "") -> str:
    """A 16-hex-digit id of a model: a directory's path + weight files (name, size, mtime), or a model id string."""
    path = Path(model).expanduser()
    h = hashlib.blake2b(digest_size=8)
    if path.is_dir():
        h.update(str(path.resolve()).encode())
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
        if not files:
            raise DataError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) found to fingerprint", path=str(path))
        for p in files:
            st = p.stat()
            h.update(f"\0{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    else:
        h.update(f"id:{model}".encode())
    if extra:
        h.update(b"\0extra\0" + (json.dumps(extra, sort_keys=True) if isinstance(extra, dict) else extra).encode())
    return h.hexdigest()


class EmbeddingCache:
    """Wrap ``encode`` so each distinct text is encoded once (in memory; on disk with ``cache_dir``).

    Calling the cache returns what ``encode`` would (numpy, the encoder's dtype; tensors become
    float32 numpy). ``hits`` counts texts served without encoding (repeats within a call
    included), ``misses`` the distinct texts sent to ``encode``, ``disk_hits`` the misses of
    memory that disk answered.
    """

    def __init__(self, encode: EncodeFn, *, cache_dir: str | os.PathLike[str] | None = None,
                 fingerprint: str | None = None, model_info: dict[str, Any] | None = None) -> None:
        if cache_dir is not None and not fingerprint:
            raise ConfigError("EmbeddingCache: a cache_dir needs a model fingerprint "
                              "(fingerprint=model_fingerprint(model_dir) or a model id)")
        if fingerprint is not None and (not fingerprint or any(c in fingerprint for c in "/\\\0") or
                                        fingerprint in (".", "..")):
            raise ConfigError(f"EmbeddingCache: fingerprint {fingerprint!r} must be a non-empty name without '/'")
        self.encode_fn = encode
        self.fingerprint = fingerprint
        self.dir = Path(cache_dir).expanduser() / fingerprint if cache_dir is not None and fingerprint else None
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self.calls = 0
        self._index: dict[str, int] = {}
        self._rows: list[np.ndarray] = []  # chunks, concatenated lazily
        self._n = 0
        self._dim: int | None = None
        self._dtype: np.dtype[Any] | None = None
        self._disk: dict[str, tuple[Path, int]] = {}
        self._shards: dict[Path, np.ndarray] = {}
        self._seq = 0
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.dir / "model.json"
            if not meta.exists():
                _atomic_write(meta, json.dumps({"fingerprint": fingerprint, **(model_info or {})}, indent=2))
            self._scan()

    # -- disk -----------------------------------------------------------------------------------
    def _scan(self) -> None:
        """Index the complete shards on disk (their json written) that this cache has not seen."""
        assert self.dir is not None
        for js in sorted(self.dir.glob("shard-*.json")):
            npy = js.with_suffix(".npy")
            if npy in self._shards or not npy.is_file():
                continue
            try:
                info = json.loads(js.read_text(encoding="utf-8"))
                keys = info["keys"]
            except (OSError, ValueError, KeyError) as e:
                raise DataError(f"unreadable embedding-cache index ({e})", path=str(js)) from None
            arr = np.load(npy, mmap_mode="r", allow_pickle=False)
            if arr.ndim != 2 or arr.shape[0] != len(keys):
                raise DataError(f"shard holds {arr.shape} rows for {len(keys)} keys", path=str(npy))
            self._shards[npy] = arr
            for i, k in enumerate(keys):
                self._disk.setdefault(k, (npy, i))

    def _write_shard(self, keys: list[str], arr: np.ndarray) -> None:
        assert self.dir is not None
        self._seq += 1
        stem = f"shard-{time.time_ns()}-{os.getpid()}-{self._seq}"
        npy = self.dir / f"{stem}.npy"
        tmp = self.dir / f".{stem}.npy.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
        os.replace(tmp, npy)
        _atomic_write(self.dir / f"{stem}.json", json.dumps(
            {"keys": keys, "dim": int(arr.shape[1]), "dtype": str(arr.dtype), "fingerprint": self.fingerprint}))
        self._shards[npy] = arr
        for i, k in enumerate(keys):
            self._disk.setdefault(k, (npy, i))

    # -- memory ---------------------------------------------------------------------------------
    def _matrix(self) -> np.ndarray:
        if len(self._rows) != 1:
            self._rows = [np.concatenate(self._rows, axis=0)] if self._rows else []
        return self._rows[0]

    def _add(self, keys: list[str], arr: np.ndarray) -> None:
        if self._dim is None:
            self._dim, self._dtype = int(arr.shape[1]), arr.dtype
        elif arr.shape[1] != self._dim:
            raise DataError(f"encode returned width {arr.shape[1]}, earlier calls {self._dim}")
        arr = arr.astype(self._dtype, copy=False)
        for i, k in enumerate(keys):
            self._index[k] = self._n + i
        self._n += len(keys)
        self._rows.append(arr)

    def __len__(self) -> int:
        """Number of distinct texts held in memory."""
        return self._n

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (one row each, input order), encoding only texts never seen."""
        if isinstance(texts, str):
            raise TypeError("EmbeddingCache expects a list of texts, not a single string")
        texts = list(texts)
        self.calls += 1
        keys = [text_key(t) for t in texts]
        new: dict[str, str] = {}
        for k, t in zip(keys, texts):
            if k not in self._index and k not in new:
                new[k] = t
        if new and self._disk:
            on_disk = [k for k in new if k in self._disk]
            if on_disk:
                self._add(on_disk, np.stack([np.asarray(self._shards[self._disk[k][0]][self._disk[k][1]])
                                             for k in on_disk]))
                self.disk_hits += len(on_disk)
                for k in on_disk:
                    del new[k]
        if new:
            arr = _encode_checked_native(self.encode_fn, list(new.values()))
            self._add(list(new), arr)
            self.misses += len(new)
            if self.dir is not None:
                self._write_shard(list(new), arr.astype(self._dtype, copy=False))
        self.hits += len(texts) - len(new)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=self._dtype or np.float32)
        return self._matrix()[[self._index[k] for k in keys]]

    def stats(self) -> dict[str, int]:
        """Counters: calls, hits, misses (texts encoded), disk_hits, size (distinct texts in memory)."""
        return {"calls": self.calls, "hits": self.hits, "misses": self.misses, "disk_hits": self.disk_hits,
                "size": self._n}


def _encode_checked_native(encode: EncodeFn, texts: list[str]) -> np.ndarray:
    """``encode`` output as numpy in the encoder's own float dtype (tensors -> float32), checked."""
    out = encode(list(texts))
    if hasattr(out, "detach"):
        out = out.detach().cpu().float().numpy()
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise DataError(f"encode returned an array of shape {arr.shape} for {len(texts)} texts; "
                        "expected (n_texts, dim)")
    return arr


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
