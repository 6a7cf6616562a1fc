"""Vector indexes behind one interface: exact (our chunked matmul top-k), and FAISS flat, HNSW and IVF-PQ.

Kinds (``build_index(kind, dim, metric=..., **params)``):

* ``exact`` -- brute force in torch: the corpus is scanned in blocks of ``chunk`` rows, each
  block's scores written into one preallocated buffer (``torch.mm(out=)``) and its top-k merged
  into a running top-k. Vectors are kept in numpy and saved as ``.npy``. Ties come in
  unspecified order (use :func:`contrastkit.evaluation.retrieval.search` when the tie rule matters;
  that function normalises and allocates per call, which made it 3-6x slower than FAISS here).
* ``flat`` -- ``faiss.IndexFlatIP`` (exact, FAISS's BLAS kernel).
* ``hnsw`` -- ``faiss.IndexHNSWFlat`` with inner product; params ``M``, ``ef_construction``,
  ``ef_search`` (Malkov & Yashunin, 2018, "Efficient and robust approximate nearest neighbor search
  using Hierarchical Navigable Small World graphs"). Cannot remove vectors.
* ``ivfpq`` -- ``faiss.IndexIVFPQ``: inverted lists over ``nlist`` k-means cells, vectors
  product-quantised into ``m`` codes of ``nbits`` bits, ``nprobe`` cells searched (Jegou, Douze &
  Schmid, 2011, "Product quantization for nearest neighbor search"). Needs training: the first
  ``add`` trains on its vectors when the index is untrained (or call :meth:`VectorIndex.train`).

``metric="cosine"`` (default) L2-normalises added vectors and queries and ranks by inner product;
``metric="ip"`` ranks by raw inner product. The FAISS kinds are wrapped in ``IndexIDMap2`` so
every vector carries a caller-given int64 id. ``save(path)`` writes a directory
(``index.json`` + ``index.faiss`` via ``faiss.write_index``, or ``vectors.npy`` + ``ids.npy``)
under a temporary name and renames it into place, so a reader never sees a half-written index.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.errors import ConfigError

__all__ = ["INDEX_KINDS", "METRICS", "ExactIndex", "FaissIndex", "VectorIndex", "build_index", "load_index"]

INDEX_KINDS: tuple[str, ...] = ("exact", "flat", "hnsw", "ivfpq")
METRICS: tuple[str, ...] = ("cosine", "ip")
_META = "index.json"
_DEFAULTS: dict[str, dict[str, Any]] = {
    "exact": {"chunk": 16384},
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 256},
    "ivfpq": {"nlist": 256, "m": None, "nbits": 8, "nprobe": 16},
}


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss is in the 'search' extra
        from contrastkit.data.readers import OptionalDependencyError

        raise OptionalDependencyError("FAISS indexes need faiss: pip install 'contrastkit[search]'") from e
    return faiss


def _as_matrix(x: Any, dim: int, what: str) -> np.ndarray:
    """A C-contiguous float32 (n, dim) copy-if-needed of ``x`` (a 1-d vector counts as one row)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ConfigError(f"{what}: expected vectors of shape (n, {dim}), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{what}: vectors contain NaN or infinite values")
    return np.ascontiguousarray(a)


def _normalize(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.maximum(norms, 1e-12)


def _as_ids(ids: Any, n: int) -> np.ndarray:
    out = np.asarray(ids, dtype=np.int64).reshape(-1)
    if out.shape[0] != n:
        raise ConfigError(f"got {out.shape[0]} ids for {n} vectors")
    return out


class VectorIndex(ABC):
    """A top-k inner-product (or cosine) index over int64-identified vectors."""

    kind: str = ""

    def __init__(self, dim: int, metric: str = "cosine", **params: Any) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"index dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        unknown = set(params) - set(_DEFAULTS[self.kind])
        if unknown:
            raise ConfigError(f"index kind {self.kind!r} has no parameter(s) {sorted(unknown)}; "
                              f"known: {sorted(_DEFAULTS[self.kind]) or 'none'}")
        self.dim = dim
        self.metric = metric
        self.params = {**_DEFAULTS[self.kind], **params}

    def _prep(self, x: Any, what: str) -> np.ndarray:
        a = _as_matrix(x, self.dim, what)
        return _normalize(a) if self.metric == "cosine" else a

    @property
    def supports_remove(self) -> bool:
        """Whether :meth:`remove` works (HNSW graphs cannot drop vectors)."""
        return True

    @property
    def is_trained(self) -> bool:
        """Whether the index can take vectors (only IVF-PQ needs training first)."""
        return True

    def train(self, vectors: Any) -> None:
        """Train the index on sample vectors (a no-op for kinds that need no training)."""

    @abstractmethod
    def add(self, vectors: Any, ids: Any = None) -> None:
        """Add (n, dim) vectors with int64 ids (default: continuing after the largest id)."""

    @abstractmethod
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, ids)``, each (n_queries, k); slots without a result hold id -1, score -inf."""

    @abstractmethod
    def remove(self, ids: Any) -> int:
        """Drop the vectors with these ids; returns how many were removed."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """The ids held, as an int64 array."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _save_payload(self, path: Path) -> None: ...

    def _next_ids(self, n: int) -> np.ndarray:
        held = self.ids()
        start = int(held.max()) + 1 if held.size else 0
        return np.arange(start, start + n, dtype=np.int64)

    def save(self, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
        """Write the index to directory ``path`` atomically (temp dir, fsync, rename); ``extra`` goes to index.json."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self._save_payload(tmp)
        meta = {"kind": self.kind, "dim": self.dim, "metric": self.metric, "params": self.params,
                "count": len(self), "format_version": 1, **(extra or {})}
        (tmp / _META).write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            _fsync_file(f)
        _fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old)
        return path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems refuse to fsync directories
        pass


# ----------------------------------------------------------------------------- exact (ours)
def topk_inner_product(queries: np.ndarray, corpus: np.ndarray, k: int, *, chunk: int = 16384,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of ``queries @ corpus.T`` as ``(scores, row indices)``, scanning ``chunk`` rows at a time."""
    import torch

    n_q, n_c = queries.shape[0], corpus.shape[0]
    kk = min(k, n_c)
    scores = np.full((n_q, k), -np.inf, dtype=np.float32)
    rows = np.full((n_q, k), -1, dtype=np.int64)
    if n_q == 0 or kk == 0:
        return scores, rows
    q = torch.from_numpy(queries)
    c = torch.from_numpy(corpus)
    buf = torch.empty(n_q, min(chunk, n_c), dtype=torch.float32)
    best_v = best_i = None
    for start in range(0, n_c, chunk):
        block = c[start:start + chunk]
        out = buf if block.shape[0] == buf.shape[1] else torch.empty(n_q, block.shape[0])
        torch.mm(q, block.T, out=out)
        v, i = torch.topk(out, min(kk, block.shape[0]), dim=1, sorted=False)
        i += start
        if best_v is None or best_i is None:
            best_v, best_i = v, i
        else:
            merged = torch.cat([best_v, v], 1)
            v, j = torch.topk(merged, min(kk, merged.shape[1]), dim=1, sorted=False)
            best_i = torch.cat([best_i, i], 1).gather(1, j)
            best_v = v
    assert best_v is not None and best_i is not None
    v, order = torch.sort(best_v, dim=1, descending=True)
    scores[:, :v.shape[1]] = v.numpy()
    rows[:, :v.shape[1]] = best_i.gather(1, order).numpy()
    return scores, rows


class ExactIndex(VectorIndex):
    """Brute-force top-k with our chunked torch matmul; vectors kept in numpy, saved as .npy."""

    kind = "exact"

    def __init__(self, dim: int, metric: str = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        if int(self.params["chunk"]) < 1:
            raise ConfigError(f"exact index chunk must be >= 1, got {self.params['chunk']!r}")
        self._parts: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32)]
        self._id_parts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]

    def _consolidate(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._parts) > 1:
            self._parts = [np.concatenate(self._parts)]
            self._id_parts = [np.concatenate(self._id_parts)]
        return self._parts[0], self._id_parts[0]

    def add(self, vectors: Any, ids: Any = None) -> None:
        """Append vectors (normalised for cosine) with their ids."""
        x = self._prep(vectors, "exact index add")
        new_ids = self._next_ids(len(x)) if ids is None else _as_ids(ids, len(x))
        self._parts.append(x)
        self._id_parts.append(new_ids)

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by inner product of (normalised) vectors."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        x, ids = self._consolidate()
        scores, rows = topk_inner_product(self._prep(queries, "exact index search"), x, k,
                                          chunk=int(self.params["chunk"]))
        if not len(ids):  # nothing to point at (rows are all -1)
            return scores, rows
        return scores, np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)

    def remove(self, ids: Any) -> int:
        """Drop vectors by id."""
        x, held = self._consolidate()
        keep = ~np.isin(held, np.asarray(ids, dtype=np.int64))
        self._parts, self._id_parts = [x[keep]], [held[keep]]
        return int((~keep).sum())

    def ids(self) -> np.ndarray:
        """Ids in insertion order."""
        return self._consolidate()[1]

    def vectors(self) -> np.ndarray:
        """The stored (normalised for cosine) vectors, aligned with :meth:`ids`."""
        return self._consolidate()[0]

    def __len__(self) -> int:
        return sum(len(p) for p in self._id_parts)

    def _save_payload(self, path: Path) -> None:
        x, ids = self._consolidate()
        np.save(path / "vectors.npy", x)
        np.save(path / "ids.npy", ids)

    def _load_payload(self, path: Path) -> None:
        x = np.load(path / "vectors.npy")
        ids = np.load(path / "ids.npy")
        if x.shape != (len(ids), self.dim):
            raise ConfigError(f"{path}: vectors.npy has shape {x.shape}, expected ({len(ids)}, {self.dim})")
        self._parts, self._id_parts = [x.astype(np.float32, copy=False)], [ids.astype(np.int64, copy=False)]


# ----------------------------------------------------------------------------- FAISS kinds
class FaissIndex(VectorIndex):
    """A FAISS index (flat, HNSW or IVF-PQ, inner product) wrapped in IndexIDMap2 for int64 ids."""

    def __init__(self, kind: str, dim: int, metric: str = "cosine", **params: Any) -> None:
        self.kind = kind
        super().__init__(dim, metric, **params)
        self._faiss = _import_faiss()
        self.index = self._faiss.IndexIDMap2(self._make_inner())
        self._apply_search_params()

    def _make_inner(self) -> Any:
        faiss, p, d = self._faiss, self.params, self.dim
        if self.kind == "flat":
            return faiss.IndexFlatIP(d)
        if self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = int(p["ef_construction"])
            return inner
        m = p["m"] if p["m"] is not None else _default_pq_m(d)
        if d % int(m):
            raise ConfigError(f"ivfpq: m={m} must divide the dimension {d}")
        p["m"] = int(m)
        quantizer = faiss.IndexFlatIP(d)
        inner = faiss.IndexIVFPQ(quantizer, d, int(p["nlist"]), int(m), int(p["nbits"]), faiss.METRIC_INNER_PRODUCT)
        return inner  # faiss's Python wrapper keeps ``quantizer`` alive with ``inner``

    @property
    def _inner(self) -> Any:
        return self._faiss.downcast_index(self.index.index)

    def _apply_search_params(self) -> None:
        inner = self._inner
        if self.kind == "hnsw":
            inner.hnsw.efSearch = int(self.params["ef_search"])
        elif self.kind == "ivfpq":
            inner.nprobe = int(self.params["nprobe"])

    @property
    def min_train(self) -> int:
        """Fewest vectors IVF-PQ training accepts (one per cell and per PQ centroid); 0 for other kinds."""
        return max(int(self.params["nlist"]), 2 ** int(self.params["nbits"])) if self.kind == "ivfpq" else 0

    @property
    def supports_remove(self) -> bool:
        """HNSW graphs cannot drop vectors; flat and IVF-PQ can."""
        return self.kind != "hnsw"

    @property
    def is_trained(self) -> bool:
        """Whether IVF-PQ has been trained (always true for flat and HNSW)."""
        return bool(self.index.is_trained)

    def train(self, vectors: Any) -> None:
        """Train IVF-PQ's coarse quantiser and codebooks on sample vectors."""
        if self.is_trained:
            return
        x = self._prep(vectors, f"{self.kind} index train")
        if len(x) < self.min_train:
            raise ConfigError(f"ivfpq index needs at least {self.min_train} vectors to train (nlist="
                              f"{self.params['nlist']}, nbits={self.params['nbits']}), got {len(x)}; "
                              f"add more vectors at once, lower nlist, or use kind 'exact'/'flat'/'hnsw'")
        self.index.train(x)

    def add(self, vectors: Any, ids: Any = None) -> None:
        """Add vectors with their ids (an untrained IVF-PQ is trained on them first)."""
        x = self._prep(vectors, f"{self.kind} index add")
        new_ids = self._next_ids(len(x)) if ids is None else _as_ids(ids, len(x))
        if not self.is_trained:
            self.train(x)
        if len(x):
            self.index.add_with_ids(x, new_ids)

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product; -1 ids where FAISS found fewer than k."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        q = self._prep(queries, f"{self.kind} index search")
        if len(self) == 0 or not self.is_trained:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        scores, ids = self.index.search(q, k)
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids.astype(np.int64)

    def remove(self, ids: Any) -> int:
        """Drop vectors by id (not for HNSW: rebuild it instead)."""
        if not self.supports_remove:
            raise NotImplementedError("faiss HNSW indexes cannot remove vectors; rebuild the index instead")
        sel = self._faiss.IDSelectorBatch(np.ascontiguousarray(np.asarray(ids, dtype=np.int64)))
        return int(self.index.remove_ids(sel))

    def ids(self) -> np.ndarray:
        """Ids in insertion order."""
        return self._faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _save_payload(self, path: Path) -> None:
        self._faiss.write_index(self.index, str(path / "index.faiss"))

    def _load_payload(self, path: Path) -> None:
        self.index = self._faiss.read_index(str(path / "index.faiss"))
        self._apply_search_params()


def _default_pq_m(dim: int) -> int:
    """Largest divisor of ``dim`` not above dim/8 (8 dimensions per sub-quantiser, 384 -> 48)."""
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def build_index(kind: str, dim: int, *, metric: str = "cosine", **params: Any) -> VectorIndex:
    """A new empty index of ``kind`` ('exact', 'flat', 'hnsw', 'ivfpq') over ``dim``-d vectors."""
    if kind not in INDEX_KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose from {', '.join(INDEX_KINDS)}")
    if kind == "exact":
        return ExactIndex(dim, metric, **params)
    return FaissIndex(kind, dim, metric, **params)


def load_index(path: str | os.PathLike[str]) -> VectorIndex:
    """Read an index directory written by :meth:`VectorIndex.save`."""
    path = Path(path)
    meta_file = path / _META
    if not meta_file.is_file():
        raise ConfigError(f"{path}: not an index directory (no {_META})")
    meta = json.loads(meta_file.read_text())
    params = dict(meta.get("params", {}))
    index = build_index(meta["kind"], int(meta["dim"]), metric=meta["metric"], **params)
    index._load_payload(path)  # type: ignore[attr-defined]
    if len(index) != int(meta.get("count", len(index))):
        raise ConfigError(f"{path}: index holds {len(index)} vectors, index.json says {meta['count']}")
    return index


def read_index_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``index.json`` of a saved index directory."""
    return json.loads((Path(path) / _META).read_text())
