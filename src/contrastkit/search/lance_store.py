"""The store's vector-database backend: LanceDB (embedded, in-process, no server) holds rows and vectors.

Why LanceDB, of the embedded vector databases on PyPI: every ``add`` and ``delete`` is one commit
of a new table version (data files first, then the version's manifest, published by an atomic
hard link that fails if the version exists), so a process SIGKILLed mid-write leaves the old or the new version, never a mix: the
store's own crash guarantee. Several processes may read and write one table (readers here ask for
the newest version before every read), and a search without a vector index is a brute-force
scan, i.e. exact. qdrant-client's local mode commits point by point (a killed batch is half
there) and locks its folder to one process; Chroma searches an approximate HNSW graph only and
is single-process.

Layout of a store directory::

    lancedb.json   settings: backend, format_version, dim, kind, metric, model, model_fingerprint
    docs.lance/    the LanceDB table: id, text, metadata (JSON text), vector (fixed-size float32)
    write.lock     taken (flock) around every add/delete, so an id check and its write are one step

The API is :class:`~contrastkit.search.Store`'s (create/open/build/add/get/delete/search/flush/close,
``where`` filters, ``k`` capped at the size, the model check). What differs from the SQLite store:

* Index kinds: only ``exact`` (and ``flat``, the same thing here): LanceDB scans every vector.
  Search results equal brute-force search (``tests/test_store.py``).
* Filters: LanceDB cannot read the JSON text column, so ``where`` is evaluated in Python over the
  metadata column (same typed-equality rules as the SQLite store: ``1``, ``true`` and ``"1"``
  differ) and the matching ids are handed to LanceDB as a pre-filter of the exact scan
  (``exact_filter_limit`` has no role: filtered search is always exact and complete).
* Durability: a commit is atomic, but LanceDB calls no fsync (checked with strace): a power loss
  (not a killed process) may lose the last commits. The SQLite store syncs every commit
  (``synchronous=FULL``).
* ``flush`` compacts small fragments and removes versions older than a minute; there is no
  separate index to save. ``store.index`` (the in-memory FAISS/NumPy index) does not exist here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.errors import ConfigError, DataError
from contrastkit.fsutil import atomic_write_bytes
from contrastkit.search.index import METRICS
from contrastkit.search.store import Doc, EncodeFn, Hit, Store

__all__ = ["LanceStore", "SETTINGS_FILE"]

SETTINGS_FILE = "lancedb.json"
FORMAT_VERSION = 1
KINDS = ("exact", "flat")
_TABLE = "docs"
_LOCK = "write.lock"


def _import_lancedb() -> Any:
    try:
        import lancedb
    except ImportError as e:
        raise ConfigError(f"the lancedb backend needs LanceDB ({e}): pip install 'contrastkit[vectordb]'") from None
    return lancedb


def _quote(values: Sequence[str]) -> str:
    """A SQL ``IN`` list of string literals (quotes doubled)."""
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def _matches(meta: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Whether metadata has every ``field == value`` of ``where`` (JSON types must agree, numbers by value)."""
    for name, value in where.items():
        if name not in meta:
            return False
        got = meta[name]
        if value is None or isinstance(value, (bool, str)):
            if type(got) is not type(value) or got != value:
                return False
        elif isinstance(got, bool) or not isinstance(got, (int, float)) or got != value:
            return False
    return True


class LanceStore(Store):
    """A :class:`Store` whose documents, metadata and vectors live in one LanceDB table (see the module docstring)."""

    def __init__(self, path: Path, settings: Mapping[str, Any], encoder: EncodeFn | None,
                 exact_filter_limit: int) -> None:  # noqa: D107 - use create/open
        lancedb = _import_lancedb()
        self.path = path
        self._lock = threading.RLock()
        self.encoder = encoder
        self.exact_filter_limit = exact_filter_limit
        self.dim = int(settings["dim"])
        self.kind, self.metric = str(settings["kind"]), str(settings["metric"])
        self.index_params: dict[str, Any] = {}
        self.model = settings.get("model") or None
        self.fingerprint = settings.get("model_fingerprint") or None
        self._db = lancedb.connect(str(path), read_consistency_interval=timedelta(0))  # always the newest version
        self._table = self._db.open_table(_TABLE)
        self._conn = None  # no SQLite here

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike[str], dim: int, index_kind: str = "exact", *,  # type: ignore[override]
               metric: str = "cosine", index_params: Mapping[str, Any] | None = None, model: str | None = None,
               fingerprint: Mapping[str, Any] | None = None, encoder: EncodeFn | None = None,
               exact_filter_limit: int = 50_000, backend: str = "lancedb") -> LanceStore:
        """Create an empty LanceDB store in directory ``path`` (which must not hold a store yet)."""
        import pyarrow as pa

        if backend != "lancedb":
            raise ConfigError(f"LanceStore.create makes lancedb stores, not {backend!r} ones (use Store.create)")
        path = Path(path)
        if (path / SETTINGS_FILE).exists() or (path / "store.db").exists():
            raise ConfigError(f"{path}: a store already exists here; open it with Store.open or pick another dir")
        if index_kind not in KINDS:
            raise ConfigError(f"the lancedb backend searches exactly (a full scan): index kind must be one of "
                              f"{', '.join(KINDS)}, not {index_kind!r}; hnsw/ivfpq are the sqlite backend's")
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        if index_params:
            raise ConfigError(f"the lancedb backend takes no index parameters, got {dict(index_params)}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"dim must be a positive integer, got {dim!r}")
        if fingerprint is not None and int(fingerprint["dim"]) != dim:
            raise ConfigError(f"the model's fingerprint has dim {fingerprint['dim']}, the store dim {dim}")
        lancedb = _import_lancedb()
        path.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string()),
                            ("vector", pa.list_(pa.float32(), dim))])
        lancedb.connect(str(path)).create_table(_TABLE, schema=schema)
        settings = {"backend": "lancedb", "format_version": FORMAT_VERSION, "dim": dim, "kind": index_kind,
                    "metric": metric, "model": model or "", "model_fingerprint": dict(fingerprint or {})}
        atomic_write_bytes(path / SETTINGS_FILE, (json.dumps(settings, indent=2) + "\n").encode())  # last: the store exists
        return cls(path, settings, encoder, exact_filter_limit)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, encoder: EncodeFn | None = None,
             exact_filter_limit: int = 50_000) -> LanceStore:
        """Open an existing LanceDB store (its newest committed version)."""
        path = Path(path)
        file = path / SETTINGS_FILE
        try:
            settings = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{file}: unreadable store: {e}") from None
        problems = []
        if not isinstance(settings, dict) or settings.get("backend") != "lancedb":
            raise ConfigError(f"{file}: unreadable store: not a lancedb store's settings")
        version = settings.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            problems.append(f"'format_version' is {version!r}, expected 1..{FORMAT_VERSION}")
        if not isinstance(settings.get("dim"), int) or settings["dim"] < 1:
            problems.append(f"'dim' is {settings.get('dim')!r}, expected a positive integer")
        if settings.get("kind") not in KINDS:
            problems.append(f"'kind' is {settings.get('kind')!r}, expected one of {', '.join(KINDS)}")
        if settings.get("metric") not in METRICS:
            problems.append(f"'metric' is {settings.get('metric')!r}, expected one of {', '.join(METRICS)}")
        if problems:
            raise ConfigError(f"{file}: unreadable store: {'; '.join(problems)}")
        try:
            return cls(path, settings, encoder, exact_filter_limit)
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"{path / (_TABLE + '.lance')}: unreadable store: the LanceDB table ({e})") from None

    def close(self) -> None:
        """Compact the table (see :meth:`flush`) and let go of it."""
        with self._lock:
            if self._table is None:
                return
            self.flush()
            self._table = None

    # ------------------------------------------------------------------ state
    @property
    def generation(self) -> int:
        """The table's newest committed version (every add and delete makes one)."""
        return int(self._table.version)

    @property
    def index(self) -> Any:
        """Not available: LanceDB scans its own table; there is no separate in-memory index."""
        raise ConfigError("a lancedb store has no separate index (LanceDB scans its table exactly)")

    def flush(self) -> None:
        """Compact small fragments and drop table versions older than a minute (commits are durable already)."""
        with self._lock, self._write_lock():
            self._table.optimize(cleanup_older_than=timedelta(minutes=1))

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Serialise writers across processes (flock; released by the kernel if the holder is killed)."""
        with open(self.path / _LOCK, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def __len__(self) -> int:
        with self._lock:
            return int(self._table.count_rows())

    def ids(self) -> list[str]:
        """Every stored id (in table order)."""
        with self._lock:
            return [str(v) for v in self._scan(["id"])["id"].to_pylist()]

    def _scan(self, columns: list[str], where: str | None = None) -> Any:
        """Columns of every row (or of the rows matching an SQL ``where``) as an Arrow table."""
        q = self._table.search().select(columns)
        if where:
            q = q.where(where)
        return q.limit(max(1, self._table.count_rows())).to_arrow()

    # ------------------------------------------------------------------ writing
    def _insert(self, texts: list[str] | None, vecs: np.ndarray, doc_ids: list[str], metas: list[str]) -> list[str]:
        """Write one validated, non-empty batch as one LanceDB commit."""
        import pyarrow as pa

        n = vecs.shape[0]
        rows = pa.table({"id": pa.array(doc_ids, pa.string()),
                         "text": pa.array([None] * n if texts is None else texts, pa.string()),
                         "metadata": pa.array(metas, pa.string()),
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), self.dim)})
        with self._lock, self._write_lock():
            taken = [str(v) for part in range(0, n, 500)
                     for v in self._scan(["id"], f"id IN ({_quote(doc_ids[part:part + 500])})")["id"].to_pylist()]
            if taken:
                raise DataError(f"{len(taken)} id(s) already in the store, e.g. {taken[:5]}; delete them first")
            self._table.add(rows)
        return doc_ids

    def delete(self, ids: Sequence[Any]) -> int:
        """Delete documents by id in one commit; unknown ids are ignored; returns how many were deleted."""
        if isinstance(ids, (str, bytes)):
            raise DataError("ids must be a list of ids, not a single string")
        wanted = sorted({str(i) for i in ids})
        if not wanted:
            return 0
        with self._lock, self._write_lock():
            before = self._table.count_rows()
            self._table.delete(f"id IN ({_quote(wanted)})")
            return before - int(self._table.count_rows())

    # ------------------------------------------------------------------ reading
    def _fetch(self, wanted: list[str]) -> dict[str, Doc]:
        """The stored documents among ``wanted`` ids, by id, 500 ids per scan."""
        found: dict[str, Doc] = {}
        for s in range(0, len(wanted), 500):
            rows = self._scan(["id", "text", "metadata"], f"id IN ({_quote(wanted[s:s + 500])})").to_pylist()
            found.update({r["id"]: Doc(r["id"], r["text"], json.loads(r["metadata"])) for r in rows})
        return found

    def search(self, query: Any, k: int = 10, where: Mapping[str, Any] | None = None) -> Any:
        """Top-k hits for query vector(s) or text(s), exact: a list of Hit for one query, a list of lists for several."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        q, single = self._queries(query)
        if where:
            self._where_sql(where)  # the same checks (and errors) as the SQLite store
        with self._lock:
            prefilter = None
            n = int(self._table.count_rows())
            if where and n:
                rows = self._scan(["id", "metadata"]).to_pylist()
                allowed = [r["id"] for r in rows if _matches(json.loads(r["metadata"]), where)]
                prefilter, n = f"id IN ({_quote(allowed)})" if allowed else None, len(allowed)
            k = min(k, n)
            if k == 0:
                return [] if single else [[] for _ in range(len(q))]
            results = [self._search_one(v, k, prefilter) for v in q]
        return results[0] if single else results

    def _search_one(self, v: np.ndarray, k: int, prefilter: str | None) -> list[Hit]:
        """One query's exact top-k; scores are cosine or inner product as in the SQLite store."""
        s = self._table.search(v, vector_column_name="vector").metric("cosine" if self.metric == "cosine" else "dot")
        if prefilter:
            s = s.where(prefilter, prefilter=True)
        rows = s.select(["id", "text", "metadata", "vector", "_distance"]).limit(k).to_arrow().to_pylist()
        vecs = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(-1, self.dim)
        scores = vecs @ v
        if self.metric == "cosine":
            scores = scores / np.maximum(np.linalg.norm(vecs, axis=1) * max(float(np.linalg.norm(v)), 1e-12), 1e-12)
        order = np.argsort(-scores, kind="stable")  # LanceDB's order, ties and rounding aside
        return [Hit(rows[i]["id"], float(scores[i]), rows[i]["text"], json.loads(rows[i]["metadata"]))
                for i in order if math.isfinite(scores[i])]
