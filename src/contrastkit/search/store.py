"""A persistent vector store: documents, metadata and vectors in SQLite, a vector index beside them.

Layout of a store directory::

    store.db             SQLite (WAL): meta(key, value) and docs(key, id, text, metadata, vector)
    index-<generation>/  the index (see contrastkit.search.index) saved after that generation

Crash-safety protocol (a SIGKILL at any instant leaves the old or the new state, never a mix):

1. SQLite is the single source of truth. Every ``add`` / ``delete`` is one SQLite transaction
   (``BEGIN IMMEDIATE ... COMMIT``, WAL journal, ``synchronous=FULL``) that changes the rows
   *and* increments ``meta.generation``. SQLite makes that transaction atomic: after a crash
   the database holds either all of it or none of it.
2. ``docs.key`` is ``INTEGER PRIMARY KEY AUTOINCREMENT``, so a key is never reused after a
   delete: an index entry can only ever mean the row it was created for.
3. The index is a cache of the vectors column. After a commit the in-memory index is updated;
   it reaches disk only in :meth:`Store.flush` (also run by :meth:`Store.close` and on leaving a
   ``with`` block): written to ``.index-<g>.tmp<pid>/``, fsynced, renamed to ``index-<g>/`` (atomic),
   and only then older ``index-*`` directories are removed. ``<g>`` is the committed generation;
   it is also recorded inside the directory's ``index.json``.
4. :meth:`Store.open` removes leftover temporary directories, loads the newest
   ``index-<g>`` with ``g <= meta.generation`` whose ``index.json`` matches, and reconciles it
   with SQLite by id set: vectors of rows it lacks are added from SQLite, ids whose rows are gone
   are removed (HNSW cannot remove: the index is rebuilt from SQLite). Without a usable index
   directory the index is rebuilt from SQLite. The repaired index is saved as the current
   generation. So whatever the crash point, the reopened index holds exactly SQLite's rows.

Several processes (e.g. ``contrastkit serve`` and a concurrent ``contrastkit index add``) may
share a store: SQLite serialises their writes, and each process remembers the generation its
in-memory index reflects. Every search, and every add or delete, first compares it with
``meta.generation`` (one indexed read); when another process has committed since, the index is
reconciled with SQLite by id set as in step 4 before it is used, so a reader sees every committed
change and never a deleted row. Within a process every method holds one lock, so threads (e.g.
the HTTP service) may share a store.

Model check: a store records the model that built it (``meta.model``, a name or path) and a
fingerprint (:func:`model_fingerprint`: the model's dimension and its fp32 embeddings of three
fixed probe texts). :meth:`Store.check_model` refuses another model (cosine < 0.999 on a probe)
unless forced: vectors of two models of the same dimension are not comparable.

Every unreadable store (not SQLite, a corrupt file, missing tables, a missing or invalid
``format_version``, ``dim``, ``kind``, ``metric``, ``index_params`` or ``generation``) raises one
:class:`ConfigError` naming the file and what is wrong.

Metadata filters (``where={"field": value}``, all must match; values str, int, float, bool or
None): the matching keys are first selected in SQLite (``json_extract`` / ``json_type``, so
``1``, ``1.0``, ``true`` and ``"1"`` are different values). When at most
``exact_filter_limit`` documents match, their vectors are read from SQLite and scored exactly
(complete and exact, whatever the index kind). Otherwise the index is searched with an
over-fetch of ``k * N / matches * 2`` hits, filtered by the allow-list, and the fetch is doubled
until ``k`` hits pass or the whole index was fetched. ``k`` is capped at the number of stored
documents (``k=10**8`` on 200 documents costs what ``k=200`` costs).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.errors import ConfigError, DataError
from contrastkit.search.index import (
    INDEX_KINDS,
    METRICS,
    VectorIndex,
    build_index,
    load_index,
    read_index_meta,
    topk_inner_product,
)

__all__ = ["Doc", "Hit", "Store", "model_fingerprint"]

DB_FILE = "store.db"
FORMAT_VERSION = 1
_INDEX_DIR = re.compile(r"^index-(\d+)$")
_TMP_DIR = re.compile(r"^\.index-\d+\.(?:tmp|old)(\d+)$")
_SQL_CHUNK = 500  # parameters per IN (...) clause, well under SQLite's limit
_DOC_COLUMNS = {"key", "id", "text", "metadata", "vector"}
# Texts whose embeddings identify a model (see model_fingerprint); never change them.
_PROBES = ("A man is playing a guitar on the street.", "The committee postponed its decision until March.",
           "def add(a, b): return a + b")
_SAME_MODEL_COSINE = 0.999
BACKENDS = ("sqlite", "lancedb")

EncodeFn = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Doc:
    """A stored document: its id, text (None when added as a bare embedding) and metadata."""

    id: str
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """A search result: the document and its score (cosine or inner product, per the store's metric)."""

    id: str
    score: float
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _chunks(seq: Sequence[Any], n: int = _SQL_CHUNK) -> list[Sequence[Any]]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def model_fingerprint(encoder: Any) -> dict[str, Any]:
    """What identifies a model to a store: its dimension and its fp32 torch embeddings of three fixed texts."""
    ort = getattr(encoder, "ort", None)
    if ort is not None:
        encoder.ort = None  # the weights, not a (possibly quantised) ONNX export of them
    try:
        emb = encoder.encode(list(_PROBES), precision="fp32")
    finally:
        if ort is not None:
            encoder.ort = ort
    emb = np.asarray(emb.detach().cpu().numpy() if hasattr(emb, "detach") else emb, dtype=np.float32)
    import hashlib

    digest = hashlib.sha256(np.round(emb, 3).astype(np.float32).tobytes()).hexdigest()[:12]
    return {"dim": int(emb.shape[1]), "probe": emb.round(6).tolist(), "sha256": digest}


def _same_model(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two fingerprints come from the same model (every probe's cosine >= 0.999)."""
    x, y = np.asarray(a["probe"], dtype=np.float64), np.asarray(b["probe"], dtype=np.float64)
    if x.shape != y.shape:
        return False
    cos = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    return bool((cos >= _SAME_MODEL_COSINE).all())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unreadable(db: Path, why: str) -> ConfigError:
    return ConfigError(f"{db}: unreadable store: {why}")


def _read_meta(conn: sqlite3.Connection, db: Path) -> dict[str, Any]:
    """The store's checked settings from its meta table; any defect raises one clear ConfigError."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "docs"} <= tables:
        raise _unreadable(db, "not a contrastkit store (tables meta/docs missing)")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(docs)")}
    if not _DOC_COLUMNS <= columns:
        raise _unreadable(db, f"table docs lacks column(s) {sorted(_DOC_COLUMNS - columns)}")
    raw = dict(conn.execute("SELECT key, value FROM meta").fetchall())

    def integer(key: str, minimum: int) -> int:
        if key not in raw:
            raise _unreadable(db, f"meta has no '{key}'")
        try:
            value = int(str(raw[key]))
        except ValueError:
            raise _unreadable(db, f"meta '{key}' is {raw[key]!r}, not an integer") from None
        if value < minimum:
            raise _unreadable(db, f"meta '{key}' is {value}, expected >= {minimum}")
        return value

    version = integer("format_version", 1)
    if version > FORMAT_VERSION:
        raise _unreadable(db, f"store format {version} is newer than this contrastkit reads "
                              f"(format {FORMAT_VERSION}); upgrade contrastkit")
    meta: dict[str, Any] = {"dim": integer("dim", 1), "generation": integer("generation", 0)}
    if raw.get("kind") not in INDEX_KINDS:
        raise _unreadable(db, f"meta 'kind' is {raw.get('kind')!r}, expected one of {', '.join(INDEX_KINDS)}")
    if raw.get("metric") not in METRICS:
        raise _unreadable(db, f"meta 'metric' is {raw.get('metric')!r}, expected one of {', '.join(METRICS)}")
    meta["kind"], meta["metric"] = raw["kind"], raw["metric"]
    try:
        params = json.loads(raw.get("index_params", "{}"))
    except (TypeError, ValueError):
        params = None
    if not isinstance(params, dict):
        raise _unreadable(db, f"meta 'index_params' is {raw.get('index_params')!r}, not a JSON object")
    try:
        build_index(meta["kind"], meta["dim"], metric=meta["metric"], **params)
    except ConfigError as e:
        raise _unreadable(db, f"index settings: {e}") from None
    meta["index_params"] = params
    meta["model"] = raw.get("model") or None
    fingerprint = raw.get("model_fingerprint")
    try:
        meta["fingerprint"] = json.loads(fingerprint) if fingerprint else None
    except ValueError:
        raise _unreadable(db, "meta 'model_fingerprint' is not JSON") from None
    return meta


class Store:
    """Documents + metadata + vectors in SQLite with a crash-safe vector index (protocol: module docstring)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, encoder: EncodeFn | None,
                 exact_filter_limit: int) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self.encoder = encoder
        self.exact_filter_limit = exact_filter_limit
        meta = _read_meta(conn, path / DB_FILE)
        self.dim: int = meta["dim"]
        self.kind: str = meta["kind"]
        self.metric: str = meta["metric"]
        self.index_params: dict[str, Any] = meta["index_params"]
        self.model: str | None = meta["model"]
        self.fingerprint: dict[str, Any] | None = meta["fingerprint"]
        self._saved_generation = -1
        self._synced_generation = -1
        self._index: VectorIndex = self._open_index()

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    @classmethod
    def create(cls, path: str | os.PathLike[str], dim: int, index_kind: str = "exact", *, metric: str = "cosine",
               index_params: Mapping[str, Any] | None = None, model: str | None = None,
               fingerprint: Mapping[str, Any] | None = None, encoder: EncodeFn | None = None,
               exact_filter_limit: int = 50_000, backend: str = "sqlite") -> Store:
        """Create an empty store in directory ``path`` (which must not hold a store yet).

        ``backend``: ``sqlite`` (this module) or ``lancedb`` (an embedded vector database:
        :mod:`contrastkit.search.lance_store`, which says what it guarantees differently).
        """
        if backend not in BACKENDS:
            raise ConfigError(f"unknown store backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if backend == "lancedb":
            from contrastkit.search.lance_store import LanceStore

            return LanceStore.create(path, dim, index_kind, metric=metric, index_params=index_params, model=model,
                                     fingerprint=fingerprint, encoder=encoder, exact_filter_limit=exact_filter_limit)
        path = Path(path)
        if (path / DB_FILE).exists() or (path / "lancedb.json").exists():
            raise ConfigError(f"{path}: a store already exists here; open it with Store.open or pick another dir")
        if index_kind not in INDEX_KINDS:
            raise ConfigError(f"unknown index kind {index_kind!r}; choose from {', '.join(INDEX_KINDS)}")
        build_index(index_kind, dim, metric=metric, **dict(index_params or {}))  # validates the arguments
        if fingerprint is not None and int(fingerprint["dim"]) != dim:
            raise ConfigError(f"the model's fingerprint has dim {fingerprint['dim']}, the store dim {dim}")
        path.mkdir(parents=True, exist_ok=True)
        conn = cls._connect(path / DB_FILE)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("CREATE TABLE docs (key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                     "text TEXT, metadata TEXT NOT NULL, vector BLOB NOT NULL)")
        rows = {"format_version": FORMAT_VERSION, "dim": dim, "kind": index_kind, "metric": metric,
                "index_params": json.dumps(dict(index_params or {})), "generation": 0, "model": model or "",
                "model_fingerprint": json.dumps(dict(fingerprint)) if fingerprint else ""}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in rows.items()])
        conn.execute("COMMIT")
        return cls(path, conn, encoder, exact_filter_limit)

    @classmethod
    def build(cls, path: str | os.PathLike[str], dim: int, index_kind: str = "exact", *,
              texts: Sequence[str] | None = None, embeddings: Any = None, ids: Sequence[Any] | None = None,
              metadata: Sequence[Mapping[str, Any] | None] | None = None, **create_args: Any) -> Store:
        """Create a store holding these documents atomically: on any error nothing is left at ``path``."""
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"{path}: already exists and is not an empty directory; pick a new store directory")
        tmp = path.with_name(f".{path.name}.build{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            with cls.create(tmp, dim, index_kind, **create_args) as store:
                store.add(texts, embeddings, ids=ids, metadata=metadata)
            os.replace(tmp, path)  # also replaces an empty directory
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.open(path, encoder=create_args.get("encoder"),
                        exact_filter_limit=create_args.get("exact_filter_limit", 50_000))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, encoder: EncodeFn | None = None,
             exact_filter_limit: int = 50_000) -> Store:
        """Open an existing store (either backend), repairing its index from SQLite if a crash left it behind."""
        path = Path(path)
        if (path / "lancedb.json").exists():
            from contrastkit.search.lance_store import LanceStore

            return LanceStore.open(path, encoder=encoder, exact_filter_limit=exact_filter_limit)
        db = path / DB_FILE
        if not db.is_file():
            raise ConfigError(f"{path}: no store here (missing {DB_FILE}); create one with Store.create "
                              f"or 'contrastkit index build'")
        try:
            conn = cls._connect(db)
        except sqlite3.Error as e:
            raise _unreadable(db, f"not a readable SQLite database ({e})") from None
        try:
            return cls(path, conn, encoder, exact_filter_limit)
        except sqlite3.Error as e:
            conn.close()
            raise _unreadable(db, f"the database is damaged ({e})") from None
        except BaseException:
            conn.close()
            raise

    def check_model(self, model: str | None, fingerprint: Mapping[str, Any], *, force: bool = False) -> None:
        """Refuse a model other than the one that built the store (ConfigError) unless ``force``; dims must match."""
        if int(fingerprint["dim"]) != self.dim:
            raise ConfigError(f"{self.path}: the store holds {self.dim}-d vectors of model {self.model!r}; "
                              f"model {model!r} makes {fingerprint['dim']}-d vectors")
        if self.fingerprint is None or force or _same_model(self.fingerprint, fingerprint):
            return
        raise ConfigError(
            f"{self.path}: the store was built with model {self.model!r} (fingerprint {self.fingerprint.get('sha256')}) "
            f"but model {model!r} (fingerprint {fingerprint.get('sha256')}) gives other embeddings: its vectors "
            f"are not comparable with the stored ones. Use the store's model, rebuild the store, or pass "
            f"--force (force=True) to use it anyway")

    def close(self) -> None:
        """Save the index (see :meth:`flush`) and close the database."""
        with self._lock:
            if self._conn is None:
                return
            self.flush()
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ index management
    @property
    def generation(self) -> int:
        """The committed generation (incremented by every add and delete)."""
        return int(self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    @property
    def index(self) -> VectorIndex:
        """The in-memory vector index (ids are the store's internal row keys)."""
        return self._index

    def _new_index(self) -> VectorIndex:
        return build_index(self.kind, self.dim, metric=self.metric, **self.index_params)

    def _index_dirs(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.path.iterdir():
            m = _INDEX_DIR.match(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def _remove_leftovers(self) -> None:
        """Remove temporary index directories of crashed writers (never those of a live process)."""
        for p in self.path.iterdir():
            m = _TMP_DIR.match(p.name)
            if m and p.is_dir() and not _alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)

    def _sql_keys(self) -> np.ndarray:
        rows = self._conn.execute("SELECT key FROM docs ORDER BY key").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _vectors_for(self, keys: Sequence[int]) -> np.ndarray:
        """Stored (raw) vectors of these row keys, in the given order."""
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        pos = {int(k): i for i, k in enumerate(keys)}
        for part in _chunks(list(keys)):
            q = f"SELECT key, vector FROM docs WHERE key IN ({','.join('?' * len(part))})"
            for key, blob in self._conn.execute(q, [int(k) for k in part]):
                if not isinstance(blob, bytes) or len(blob) != 4 * self.dim:
                    raise _unreadable(self.path / DB_FILE, f"row key {key} holds a vector of "
                                      f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__} bytes, "
                                      f"expected {4 * self.dim}")
                out[pos[key]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def _rebuild(self) -> VectorIndex:
        index = self._new_index()
        keys = self._sql_keys()
        for part in _chunks(keys.tolist(), 50_000):
            if not index.is_trained:
                index.train(self._vectors_for(keys.tolist()))
            index.add(self._vectors_for(part), np.asarray(part, dtype=np.int64))
        return index

    def _reconciled(self, index: VectorIndex) -> VectorIndex:
        """``index`` made to hold exactly SQLite's rows: missing vectors added, vanished ones removed."""
        sql = self._sql_keys()
        held = index.ids()
        missing = np.setdiff1d(sql, held, assume_unique=True)
        extra = np.setdiff1d(held, sql, assume_unique=True)
        if extra.size and not index.supports_remove:
            return self._rebuild()
        if extra.size:
            index.remove(extra)
        if missing.size:
            if not index.is_trained:
                index.train(self._vectors_for(sql.tolist()))
            index.add(self._vectors_for(missing.tolist()), missing)
        return index

    def _open_index(self) -> VectorIndex:
        """Load the newest usable index directory and reconcile it with SQLite (protocol step 4)."""
        self._remove_leftovers()
        with self._read_snapshot():
            gen = self.generation
            index: VectorIndex | None = None
            loaded_gen = -1
            for g, p in self._index_dirs():
                if g > gen:
                    continue  # cannot happen under the protocol; never trust it
                try:
                    meta = read_index_meta(p)
                    if int(meta.get("generation", -1)) != g or meta.get("kind") != self.kind:
                        continue
                    index, loaded_gen = load_index(p), g
                    break
                except Exception:  # noqa: BLE001 - an unreadable index is simply rebuilt
                    continue
            index = self._rebuild() if index is None else self._reconciled(index)
        self._index = index
        self._saved_generation = loaded_gen
        self._synced_generation = gen
        if loaded_gen != gen:
            self.flush()
        return index

    @contextlib.contextmanager
    def _read_snapshot(self) -> Iterator[None]:
        """One consistent view of SQLite for the block (a read transaction unless one is open already)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _sync(self) -> None:
        """Catch up with changes other processes committed since this index last matched SQLite."""
        gen = self.generation
        if gen != self._synced_generation:
            self._index = self._reconciled(self._index)
            self._synced_generation = gen

    def flush(self) -> None:
        """Persist the index as ``index-<generation>`` (atomic rename) and drop older index directories."""
        with self._lock, self._read_snapshot():
            self._sync()
            gen = self.generation
            if gen == self._saved_generation:
                return
            if not self._index.is_trained and len(self) > 0:
                return  # an untrained IVF-PQ is rebuilt from SQLite on open
            target = self.path / f"index-{gen}"
            if not target.is_dir():  # else another process saved this generation (the same rows) already
                try:
                    self._index.save(target, extra={"generation": gen})
                except OSError:
                    if not target.is_dir():
                        raise
            for g, p in self._index_dirs():
                if g < gen:
                    shutil.rmtree(p, ignore_errors=True)
            self._saved_generation = gen

    # ------------------------------------------------------------------ writing
    def _check_ids(self, ids: Sequence[Any] | None, n: int) -> list[str]:
        if ids is None:
            return [uuid.uuid4().hex for _ in range(n)]
        if isinstance(ids, (str, bytes)):
            raise DataError("ids must be a list of ids, not a single string")
        out = []
        for i, v in enumerate(ids):
            if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v):
                raise DataError(f"ids[{i}]: expected a non-empty string or an integer, found {v!r}")
            out.append(str(v))
        if len(out) != n:
            raise DataError(f"got {len(out)} ids for {n} documents")
        seen: set[str] = set()
        dupes = sorted({v for v in out if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
        if dupes:
            raise DataError(f"ids repeated within the batch: {dupes[:5]}")
        return out

    @staticmethod
    def _check_metadata(metadata: Sequence[Any] | None, n: int) -> list[str]:
        if metadata is None:
            return ["{}"] * n
        if isinstance(metadata, Mapping):
            raise DataError("metadata must be a list with one dict per document, not a single dict")
        out = []
        for i, m in enumerate(metadata):
            if m is None:
                m = {}
            if not isinstance(m, Mapping):
                raise DataError(f"metadata[{i}]: expected a dict, found {type(m).__name__}")
            try:
                out.append(json.dumps(dict(m), ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise DataError(f"metadata[{i}]: not JSON-serialisable ({e})") from None
        if len(out) != n:
            raise DataError(f"got {len(out)} metadata entries for {n} documents")
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self.encoder is None:
            raise ConfigError("this store has no encoder: pass embeddings, or open the store with encoder=")
        emb = self.encoder(texts)
        return np.asarray(emb.detach().cpu().numpy() if hasattr(emb, "detach") else emb, dtype=np.float32)

    def _validated_batch(self, texts: Sequence[str] | None, embeddings: Any, ids: Sequence[Any] | None,
                         metadata: Sequence[Mapping[str, Any] | None] | None
                         ) -> tuple[list[str] | None, np.ndarray, list[str], list[str]]:
        """An ``add`` call's inputs checked and normalized: (texts, float32 vectors, ids, metadata JSON)."""
        if texts is None and embeddings is None:
            raise DataError("add needs texts, embeddings or both")
        if isinstance(texts, str):
            raise DataError("texts must be a list of strings, not a single string")
        if texts is not None:
            texts = list(texts)
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise DataError(f"texts[{i}]: expected a string, found {type(t).__name__}")
        emb = self._encode(texts) if embeddings is None and texts is not None else embeddings
        if hasattr(emb, "detach"):
            emb = emb.detach().cpu().numpy()
        vecs = np.ascontiguousarray(np.asarray(emb, dtype=np.float32))
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise DataError(f"embeddings: expected shape (n, {self.dim}), got {vecs.shape}")
        if not np.isfinite(vecs).all():
            raise DataError("embeddings contain NaN or infinite values")
        n = vecs.shape[0]
        if texts is not None and len(texts) != n:
            raise DataError(f"got {len(texts)} texts for {n} embeddings")
        return texts, vecs, self._check_ids(ids, n), self._check_metadata(metadata, n)

    def add(self, texts: Sequence[str] | None = None, embeddings: Any = None, *, ids: Sequence[Any] | None = None,
            metadata: Sequence[Mapping[str, Any] | None] | None = None) -> list[str]:
        """Add documents (texts, embeddings or both; texts alone are encoded) in one transaction; returns their ids."""
        texts, vecs, doc_ids, metas = self._validated_batch(texts, embeddings, ids, metadata)
        return self._insert(texts, vecs, doc_ids, metas) if len(vecs) else []

    def _insert(self, texts: list[str] | None, vecs: np.ndarray, doc_ids: list[str], metas: list[str]) -> list[str]:
        """Write one validated, non-empty batch in one transaction (the backend's part of ``add``)."""
        n = vecs.shape[0]
        with self._lock:
            index = self._index
            min_train = getattr(index, "min_train", 0)
            if not index.is_trained and len(self) + n < min_train:
                raise DataError(f"the {self.kind} index trains on the first {min_train} vectors; this batch "
                                f"brings the store to {len(self) + n}: add at least {min_train} documents at once")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sync()  # another process may have written since: index == SQLite before this change
                taken = []
                for part in _chunks(doc_ids):
                    q = f"SELECT id FROM docs WHERE id IN ({','.join('?' * len(part))})"
                    taken += [r[0] for r in conn.execute(q, list(part))]
                if taken:
                    raise DataError(f"{len(taken)} id(s) already in the store, e.g. {taken[:5]}; delete them first")
                row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='docs'").fetchone()
                base = int(row[0]) if row else 0
                keys = np.arange(base + 1, base + 1 + n, dtype=np.int64)
                conn.executemany("INSERT INTO docs (key, id, text, metadata, vector) VALUES (?, ?, ?, ?, ?)",
                                 ((int(keys[i]), doc_ids[i], None if texts is None else texts[i], metas[i],
                                   vecs[i].tobytes()) for i in range(n)))
                conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._synced_generation += 1
            self._apply(lambda ix: ix.add(vecs, keys))
        return doc_ids

    def _apply(self, change: Callable[[VectorIndex], Any]) -> None:
        """Apply a committed change to the in-memory index; rebuild it from SQLite when it cannot take it."""
        try:
            if not self._index.is_trained:
                raise NotImplementedError  # an untrained IVF-PQ trains on everything stored
            change(self._index)
        except NotImplementedError:
            self._index = self._rebuild()
        except Exception:
            self._index = self._rebuild()  # SQLite already committed: keep the index equal to it
            raise

    def delete(self, ids: Sequence[Any]) -> int:
        """Delete documents by id in one transaction; unknown ids are ignored; returns how many were deleted."""
        if isinstance(ids, (str, bytes)):
            raise DataError("ids must be a list of ids, not a single string")
        wanted = [str(i) for i in ids]
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sync()
                keys: list[int] = []
                for part in _chunks(wanted):
                    marks = ",".join("?" * len(part))
                    keys += [r[0] for r in conn.execute(f"SELECT key FROM docs WHERE id IN ({marks})", list(part))]
                    conn.execute(f"DELETE FROM docs WHERE id IN ({marks})", list(part))
                if keys:
                    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if keys:
                self._synced_generation += 1
                self._apply(lambda ix: ix.remove(np.asarray(keys, dtype=np.int64)))
        return len(keys)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def get(self, ids: Sequence[Any]) -> list[Doc | None]:
        """Documents by id, in the given order (None where an id is not in the store)."""
        if isinstance(ids, (str, bytes)):
            raise DataError("ids must be a list of ids, not a single string")
        wanted = [str(i) for i in ids]
        with self._lock:
            found = self._fetch(wanted)
        return [found.get(i) for i in wanted]

    def _fetch(self, wanted: list[str]) -> dict[str, Doc]:
        """The stored documents among ``wanted`` ids, by id (the backend's part of ``get``)."""
        found: dict[str, Doc] = {}
        for part in _chunks(wanted):
            q = f"SELECT id, text, metadata FROM docs WHERE id IN ({','.join('?' * len(part))})"
            for doc_id, text, meta in self._conn.execute(q, list(part)):
                found[doc_id] = Doc(doc_id, text, json.loads(meta))
        return found

    def _rows_for_keys(self, keys: Sequence[int]) -> dict[int, tuple[str, str | None, dict[str, Any]]]:
        out = {}
        for part in _chunks([int(k) for k in keys]):
            q = f"SELECT key, id, text, metadata FROM docs WHERE key IN ({','.join('?' * len(part))})"
            for key, doc_id, text, meta in self._conn.execute(q, list(part)):
                out[key] = (doc_id, text, json.loads(meta))
        return out

    def _where_keys(self, where: Mapping[str, Any]) -> np.ndarray:
        """Keys of the rows whose metadata has every ``field == value`` of ``where``."""
        q, params = self._where_sql(where)
        rows = self._conn.execute(q, params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    @staticmethod
    def _where_sql(where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The checked SQL query (and its parameters) selecting the keys that match ``where``."""
        clauses: list[str] = []
        params: list[Any] = []
        for name, value in where.items():
            if not isinstance(name, str) or not name or '"' in name or "\\" in name:
                raise DataError(f"where: field names must be non-empty strings without quotes, found {name!r}")
            path = f'$."{name}"'
            if value is None:
                clauses.append("json_type(metadata, ?) = 'null'")
                params += [path]
            elif isinstance(value, bool):
                clauses.append("json_type(metadata, ?) = ?")
                params += [path, "true" if value else "false"]
            elif isinstance(value, str):
                clauses.append("(json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?)")
                params += [path, path, value]
            elif isinstance(value, (int, float)) and math.isfinite(value):
                clauses.append("(json_type(metadata, ?) IN ('integer', 'real') AND json_extract(metadata, ?) = ?)")
                params += [path, path, value]
            else:
                raise DataError(f"where[{name!r}]: values must be a string, number, boolean or null, "
                                f"found {type(value).__name__}")
        q = "SELECT key FROM docs" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY key"
        return q, params

    def _queries(self, query: Any) -> tuple[np.ndarray, bool]:
        single = False
        if isinstance(query, str):
            query, single = [query], True
        if isinstance(query, (list, tuple)) and query and all(isinstance(t, str) for t in query):
            return self._encode(list(query)), single
        if hasattr(query, "detach"):
            query = query.detach().cpu().numpy()
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 1:
            q, single = q[None, :], True
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"query: expected text(s) or vectors of shape (n, {self.dim}), got shape {q.shape}")
        if not np.isfinite(q).all():
            raise DataError("query vectors contain NaN or infinite values")
        return np.ascontiguousarray(q), single

    def search(self, query: Any, k: int = 10, where: Mapping[str, Any] | None = None) -> Any:
        """Top-k hits for query vector(s) or text(s): a list of Hit for one query, a list of lists for several."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        q, single = self._queries(query)
        if where:
            self._where_sql(where)  # bad filters are refused even on an empty store
        with self._lock, self._read_snapshot():
            self._sync()
            k = min(k, len(self._index))  # never more slots than documents
            if k == 0:
                return [] if single else [[] for _ in range(len(q))]
            if where:
                scores, keys = self._filtered_search(q, k, where)
            else:
                scores, keys = self._index.search(q, k)
            rows = self._rows_for_keys(sorted({int(x) for x in keys.ravel() if x >= 0}))
        results = []
        for srow, krow in zip(scores, keys):
            hits = []
            for s, key in zip(srow.tolist(), krow.tolist()):
                if key >= 0 and key in rows:
                    doc_id, text, meta = rows[key]
                    hits.append(Hit(doc_id, float(s), text, meta))
            results.append(hits)
        return results[0] if single else results

    def _filtered_search(self, q: np.ndarray, k: int, where: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        allowed = self._where_keys(where)
        n_total = len(self._index)
        if allowed.size == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if allowed.size <= self.exact_filter_limit:
            vecs = self._vectors_for(allowed.tolist())
            qq = q
            if self.metric == "cosine":
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
                qq = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            scores, rows = topk_inner_product(np.ascontiguousarray(qq, dtype=np.float32),
                                              np.ascontiguousarray(vecs, dtype=np.float32), k)
            return scores, np.where(rows >= 0, allowed[np.maximum(rows, 0)], -1)
        fetch = min(n_total, max(k, math.ceil(k * n_total / allowed.size * 2)))
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_k = np.full((len(q), k), -1, np.int64)
        todo = np.arange(len(q))
        while todo.size:
            s, keys = self._index.search(q[todo], fetch)
            ok = np.isin(keys, allowed) & (keys >= 0)
            still = []
            for r, qi in enumerate(todo):
                sel = np.flatnonzero(ok[r])[:k]
                out_s[qi, :sel.size], out_k[qi, :sel.size] = s[r, sel], keys[r, sel]
                if sel.size < k and fetch < n_total:
                    still.append(qi)
            todo = np.asarray(still, dtype=np.int64)
            fetch = min(n_total, fetch * 2)
        return out_s, out_k
