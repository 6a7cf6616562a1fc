"""Store: add/get/delete/search with filters, reopening, and consistency after SIGKILL mid-write.

The backend-neutral tests run on both backends: ``sqlite`` (SQLite rows + a FAISS/NumPy index) and
``lancedb`` (the embedded vector database, contrastkit.search.lance_store). Checks of the SQLite
backend's own machinery (its index cache, its meta table, its database file) run on it alone; the
LanceDB backend has no separate index (``store.index``) and states its differences in its module
docstring (no fsync: a killed process keeps every commit, a power loss may not).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from contrastkit.errors import ConfigError, DataError
from contrastkit.search import Store

DIM = 16
HAVE_LANCEDB = importlib.util.find_spec("lancedb") is not None
BACKENDS = ["sqlite", pytest.param("lancedb", marks=pytest.mark.skipif(not HAVE_LANCEDB,
                                                                        reason="needs contrastkit[vectordb]"))]
BATCH = 200
N_DOCS = 10_000


def vec(i: np.ndarray | int) -> np.ndarray:
    """A distinct, deterministic vector per document number."""
    i = np.atleast_1d(np.asarray(i, dtype=np.float64))
    return np.sin(np.outer(i + 1, np.arange(1, DIM + 1)) * 0.0137 + np.arange(DIM)).astype(np.float32)


WORKER = textwrap.dedent(f"""
    import sys, numpy as np
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from test_store import vec, BATCH, N_DOCS
    from contrastkit.search import Store
    st = Store.open(sys.argv[1])
    ids = {{d.id for d in st.get([f"d{{i}}" for i in range(0, N_DOCS, BATCH)]) if d is not None}}
    start = len(ids) * BATCH
    st.delete([f"d{{i}}" for i in range(start) if i % 10 == 5])  # finish a batch killed before its delete
    print("ready", flush=True)
    for b, s in enumerate(range(start, N_DOCS, BATCH)):
        n = np.arange(s, s + BATCH)
        st.add([f"text {{i}}" for i in n], vec(n), ids=[f"d{{i}}" for i in n], metadata=[{{"i": int(i)}} for i in n])
        st.delete([f"d{{i}}" for i in n if i % 10 == 5])
        if b % 3 == 2:
            st.flush()
        print(b, flush=True)
    st.close()
""")


def all_rows(st: Store) -> list[tuple[str, str | None, str, bytes]]:
    """Every stored (id, text, metadata JSON, vector bytes), whatever the backend."""
    if st._conn is not None:
        return st._conn.execute("SELECT id, text, metadata, vector FROM docs").fetchall()
    table = st._scan(["id", "text", "metadata", "vector"]).to_pylist()
    return [(r["id"], r["text"], r["metadata"], np.asarray(r["vector"], np.float32).tobytes()) for r in table]


def new_store(path: Path, kind: str, backend: str, **kw: object) -> Store:
    """``Store.create`` on a backend; the lancedb backend has one kind (an exact scan) for every index kind asked."""
    if backend == "lancedb":
        kind = kind if kind in ("exact", "flat") else "exact"
    return Store.create(path, DIM, kind, backend=backend, **kw)


def check_consistent(path: Path) -> int:
    """Reopen the store and check index == SQLite (sqlite backend), whole batches only, rows intact, search works."""
    st = Store.open(path)
    if st._conn is not None:
        keys = st._sql_keys()
        assert sorted(st.index.ids().tolist()) == keys.tolist()
        assert len(st) == len(st.index)
    rows = all_rows(st)
    assert len(rows) == len(st)
    present = set()
    for doc_id, text, meta, blob in rows:
        i = int(doc_id[1:])
        assert text == f"text {i}" and meta == f'{{"i": {i}}}'
        assert np.array_equal(np.frombuffer(blob, np.float32), vec(i)[0])
        present.add(i)
    n_batches = len({i // BATCH for i in present})
    for b in range(n_batches):  # a prefix of whole batches; each batch's delete all-or-nothing
        got = {i for i in present if i // BATCH == b}
        full = set(range(b * BATCH, (b + 1) * BATCH))
        assert got in (full, {i for i in full if i % 10 != 5}), f"batch {b} half-applied"
    assert not {i for i in present if i // BATCH >= n_batches}
    if present:
        probe = sorted(present)[len(present) // 2]
        assert st.search(vec(probe)[0], 1)[0].id == f"d{probe}"
    st.close()
    return len(present)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_leaves_old_or_new_state(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "store"
    new_store(path, "flat", backend).close()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(0)
    counts = []
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(path)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        for _ in range(rng.randint(1, 12)):  # let some batches through, then kill at a random instant
            proc.stdout.readline()
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(check_consistent(path))
    assert 0 < counts[-1] < N_DOCS * 9 // 10, counts  # killed mid-way, with documents written
    # a last, uninterrupted run completes the store
    done = subprocess.run([sys.executable, "-c", WORKER, str(path)], env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert check_consistent(path) == N_DOCS * 9 // 10


@pytest.mark.parametrize("kind, backend", [("exact", "sqlite"), ("hnsw", "sqlite"), BACKENDS[1].__class__(
    ("exact", "lancedb"), marks=BACKENDS[1].marks, id="exact-lancedb")])
def test_add_get_delete_search_reopen(kind: str, backend: str, tmp_path: Path) -> None:
    st = new_store(tmp_path / "s", kind, backend)
    sql = backend == "sqlite"
    n = np.arange(300)
    meta = [{"color": ["red", "blue", "green"][i % 3], "big": bool(i % 2 == 0), "n": int(i)} for i in n]
    ids = st.add([f"t{i}" for i in n], vec(n), ids=[f"d{i}" for i in n], metadata=meta)
    assert ids[:2] == ["d0", "d1"] and len(st) == 300
    hit = st.search(vec(7)[0], 3)[0]
    assert hit.id == "d7" and hit.text == "t7" and hit.metadata["color"] == "blue" and hit.score > 0.999
    hits = st.search(vec([7, 8]), 5, where={"color": "red", "big": True})
    assert len(hits) == 2 and all(len(h) == 5 for h in hits)
    assert all(h.metadata["color"] == "red" and h.metadata["big"] is True for row in hits for h in row)
    assert st.search(vec(3)[0], 2, where={"n": 3})[0].id == "d3"
    assert st.search(vec(3)[0], 2, where={"n": "3"}) == []  # types matter
    assert st.get(["d5", "nope"])[0].metadata == meta[5] and st.get(["nope"]) == [None]
    assert st.delete(["d7", "d8", "nope"]) == 2 and len(st) == 298 and (not sql or len(st.index) == 298)
    assert st.search(vec(7)[0], 1)[0].id != "d7"
    with pytest.raises(DataError, match="already in the store"):
        st.add(["x"], vec(1), ids=["d1"])
    assert len(st) == 298  # the failed add changed nothing
    st.close()
    st = Store.open(tmp_path / "s")
    assert len(st) == 298 and (not sql or sorted(st.index.ids().tolist()) == st._sql_keys().tolist())
    assert st.search(vec(9)[0], 1)[0].id == "d9"
    st.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_over_fetch_path_and_text_queries(backend: str, tmp_path: Path) -> None:
    encode = lambda texts: vec([int(t.split()[-1]) for t in texts])  # noqa: E731
    st = new_store(tmp_path / "s", "flat", backend, encoder=encode, exact_filter_limit=10)
    n = np.arange(200)
    st.add([f"doc {i}" for i in n], metadata=[{"odd": bool(i % 2)} for i in n])
    hits = st.search("doc 41", 4, where={"odd": True})  # 100 matches > limit 10: over-fetch from the index
    assert hits[0].text == "doc 41" and len(hits) == 4 and all(h.metadata["odd"] for h in hits)
    assert [len(r) for r in st.search(["doc 1", "doc 2"], 3)] == [3, 3]


def test_stale_index_is_repaired_on_open(tmp_path: Path) -> None:
    st = Store.create(tmp_path / "s", DIM, "exact")
    st.add(None, vec(np.arange(50)), ids=[f"d{i}" for i in range(50)])
    st.flush()  # index-1 on disk
    st.add(None, vec(np.arange(50, 60)), ids=[f"d{i}" for i in range(50, 60)])
    st.delete(["d0"])
    st._conn.close()  # "crash": the index on disk is two generations behind
    st2 = Store.open(tmp_path / "s")
    assert len(st2.index) == 59 and sorted(st2.index.ids().tolist()) == st2._sql_keys().tolist()
    assert [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith("index-")] == ["index-3"]
    st2.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_clear(backend: str, tmp_path: Path) -> None:
    st = new_store(tmp_path / "s", "exact", backend)
    with pytest.raises(ConfigError, match="no encoder"):
        st.add(["text"])
    with pytest.raises(DataError, match=r"shape \(n, 16\)"):
        st.add(None, np.zeros((2, 3)))
    with pytest.raises(DataError, match="repeated"):
        st.add(None, vec([1, 2]), ids=["a", "a"])
    with pytest.raises(DataError, match="metadata\\[0\\]"):
        st.add(None, vec([1]), metadata=[["not", "a", "dict"]])
    with pytest.raises(DataError, match="where"):
        st.search(vec(1)[0], 1, where={"a": [1]})
    with pytest.raises(ConfigError, match="already exists"):
        Store.create(tmp_path / "s", DIM)
    with pytest.raises(ConfigError, match="already exists"):
        Store.create(tmp_path / "s", DIM, backend="lancedb")
    with pytest.raises(ConfigError, match="no store here"):
        Store.open(tmp_path / "nothing")
    if backend == "lancedb":
        with pytest.raises(ConfigError, match="searches exactly"):
            Store.create(tmp_path / "h", DIM, "hnsw", backend="lancedb")
        return
    with pytest.raises(DataError, match="ivfpq index trains"):
        Store.create(tmp_path / "ivf", DIM, "ivfpq", index_params={"nlist": 4, "m": 4, "nbits": 6}).add(
            None, vec([1, 2]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_build_add_search_delete(backend: str, tiny_bert: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from conftest import make_sentences

    from contrastkit.cli import main

    docs = make_sentences(12, seed=5)
    (tmp_path / "docs.jsonl").write_text("".join(
        json.dumps({"text": t, "id": f"j{i}", "metadata": {"lang": "en" if i < 6 else "de"}}) + "\n"
        for i, t in enumerate(docs)))
    (tmp_path / "more.txt").write_text("a dog runs in the park\n\nthe cat sleeps\n")
    store = str(tmp_path / "st")
    assert main(["index", "build", "--model", str(tiny_bert), "--input", str(tmp_path / "docs.jsonl"),
                 "--store", store, "--kind", "flat", "--backend", backend, "--no-progress"]) == 0
    assert main(["index", "add", "--store", store, "--input", str(tmp_path / "more.txt"), "--no-progress"]) == 0
    assert len(Store.open(store)) == 14
    capsys.readouterr()
    assert main(["index", "search", "--store", store, "--query", docs[0], "-k", "20", "--where", "lang=de"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert {h["id"] for h in hits} == {f"j{i}" for i in range(6, 12)}
    assert main(["index", "delete", "--store", store, "--ids", "j0", "j1"]) == 0
    assert len(Store.open(store)) == 12
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    assert main(["index", "add", "--store", store, "--input", str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err


@pytest.mark.parametrize("backend,kind", [("sqlite", k) for k in ("exact", "flat", "hnsw")] + [
    pytest.param("lancedb", k, marks=BACKENDS[1].marks) for k in ("exact", "flat")])
def test_empty_store_search_returns_no_hits(kind: str, backend: str, tmp_path: Path) -> None:
    """(LanceDB has one kind, an exact scan: exact and flat cover it.)"""
    st = new_store(tmp_path / "s", kind, backend)
    assert st.search(vec(1)[0], 5) == [] and st.search(vec([1, 2]), 5) == [[], []]
    assert st.search(vec(1)[0], 5, where={"a": 1}) == []
    st.add(None, vec(np.arange(4)), ids=list("abcd"))
    assert st.delete(list("abcd")) == 4
    assert st.search(vec(1)[0], 3) == [] and len(st) == 0
    with pytest.raises(DataError, match="where"):
        st.search(vec(1)[0], 1, where={"a": [1]})  # a bad filter is still refused on an empty store
    st.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_k_is_capped_at_the_store_size(backend: str, tmp_path: Path) -> None:
    st = new_store(tmp_path / "s", "exact", backend)
    st.add(None, vec(np.arange(200)), ids=[f"d{i}" for i in range(200)],
           metadata=[{"odd": bool(i % 2)} for i in range(200)])
    if backend == "lancedb":  # no separate index to spy on: the answers alone
        assert len(st.search(vec(3)[0], 100_000_000)) == 200
        assert len(st.search(vec(3)[0], 100_000_000, where={"odd": True})) == 100
        st.close()
        return
    asked = []
    real = st.index.search

    def spy(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        asked.append(k)
        assert k <= 200, f"index asked for {k} slots"
        return real(q, k)

    st._index.search = spy  # type: ignore[method-assign]
    hits = st.search(vec(3)[0], 100_000_000)
    assert len(hits) == 200 and hits[0].id == "d3" and asked == [200]
    assert len(st.search(vec(3)[0], 100_000_000, where={"odd": True})) == 100
    st.close()


def _corrupt_meta(path: Path, sql: str, *params: object) -> None:
    import sqlite3

    conn = sqlite3.connect(str(path / "store.db"))
    conn.execute(sql, params)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("defect, message", [
    (("UPDATE meta SET value='0' WHERE key='format_version'",), "format_version' is 0"),
    (("UPDATE meta SET value='-5' WHERE key='format_version'",), "format_version' is -5"),
    (("UPDATE meta SET value='abc' WHERE key='format_version'",), "'abc', not an integer"),
    (("UPDATE meta SET value='99' WHERE key='format_version'",), "newer than this contrastkit"),
    (("DELETE FROM meta WHERE key='format_version'",), "no 'format_version'"),
    (("DELETE FROM meta WHERE key='dim'",), "no 'dim'"),
    (("UPDATE meta SET value='x' WHERE key='dim'",), "'dim' is 'x'"),
    (("UPDATE meta SET value='annoy' WHERE key='kind'",), "'kind' is 'annoy'"),
    (("UPDATE meta SET value='l2' WHERE key='metric'",), "'metric' is 'l2'"),
    (("UPDATE meta SET value='[1' WHERE key='index_params'",), "index_params"),
    (("UPDATE meta SET value='{\"nope\": 1}' WHERE key='index_params'",), "no parameter"),
    (("UPDATE meta SET value='x' WHERE key='generation'",), "'generation'"),
    (("DROP TABLE docs",), "tables meta/docs missing"),
    (("UPDATE docs SET vector=x'0000' WHERE id='b'",), "row key 2 holds a vector of 2 bytes"),
])
def test_every_unreadable_store_gives_one_clear_error(defect: tuple, message: str, tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store.create(path, DIM, "exact") as st:
        st.add(None, vec([0, 1]), ids=["a", "b"])
    for p in path.glob("index-*"):  # force a rebuild from SQLite, which reads every vector
        import shutil

        shutil.rmtree(p)
    _corrupt_meta(path, *defect)
    with pytest.raises(ConfigError, match="unreadable store") as err:
        Store.open(path)
    assert message in str(err.value) and str(path / "store.db") in str(err.value)


@pytest.mark.parametrize("garbage", [b"this is not a database at all" * 100, b""])
def test_a_corrupt_database_file_gives_a_clear_error(garbage: bytes, tmp_path: Path) -> None:
    path = tmp_path / "s"
    with Store.create(path, DIM, "exact") as st:
        st.add(None, vec([0, 1]), ids=["a", "b"])
    db = path / "store.db"
    db.write_bytes(garbage if garbage else db.read_bytes()[:3000])  # garbage, or a truncated file
    with pytest.raises(ConfigError, match="unreadable store"):
        Store.open(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_build_is_atomic_and_a_rerun_works(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "s"
    with pytest.raises(DataError, match="repeated"):
        Store.build(path, DIM, "flat", embeddings=vec([0, 1, 2]), ids=["a", "b", "a"], backend=backend)
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing left behind, no temporary dir
    with Store.build(path, DIM, "flat", embeddings=vec([0, 1, 2]), ids=["a", "b", "c"],
                     metadata=[{"n": i} for i in range(3)], model="m", backend=backend) as st:
        assert len(st) == 3 and st.model == "m" and st.search(vec(1)[0], 1)[0].id == "b"
    with pytest.raises(ConfigError, match="not an empty directory"):
        Store.build(path, DIM, embeddings=vec([0]), backend=backend)


OTHER_PROCESS = textwrap.dedent(f"""
    import sys, numpy as np
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from test_store import vec
    from contrastkit.search import Store
    with Store.open(sys.argv[1]) as st:
        if sys.argv[2] == "add":
            st.add(None, vec(np.arange(100, 110)), ids=[f"d{{i}}" for i in range(100, 110)],
                   metadata=[{{"new": True}}] * 10)
        else:
            st.delete([f"d{{i}}" for i in range(0, 100) if i % 10 != 0])
""")


@pytest.mark.parametrize("kind, backend", [("exact", "sqlite"), ("hnsw", "sqlite"), BACKENDS[1].__class__(
    ("exact", "lancedb"), marks=BACKENDS[1].marks, id="exact-lancedb")])
def test_an_open_store_sees_other_processes_commits(kind: str, backend: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "s"
    served = new_store(path, kind, backend)  # stays open, as under 'contrastkit serve'
    sql = backend == "sqlite"
    served.add(None, vec(np.arange(100)), ids=[f"d{i}" for i in range(100)])
    assert served.search(vec(105)[0], 1)[0].id != "d105"
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path), "add"], env=env, check=True, timeout=120)
    assert len(served) == 110
    assert served.search(vec(105)[0], 1)[0].id == "d105"  # unfiltered search sees the new rows
    assert {h.id for h in served.search(vec(105)[0], 20, where={"new": True})} == {f"d{i}" for i in range(100, 110)}
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path), "delete"], env=env, check=True, timeout=120)
    hits = served.search(vec(55)[0], 5)
    assert len(hits) == 5 and all(int(h.id[1:]) % 10 == 0 or int(h.id[1:]) >= 100 for h in hits)
    # this process writes on top of the other's changes, and reopening agrees
    served.add(None, vec([500]), ids=["d500"])
    assert len(served) == 21 and (not sql or len(served.index) == 21)
    served.close()
    with Store.open(path) as again:
        assert len(again) == 21 and (not sql or sorted(again.index.ids().tolist()) == again._sql_keys().tolist())


def _tiny_encoder(tiny_bert: Path):
    from contrastkit.encoders import Encoder

    return Encoder.from_pretrained(str(tiny_bert))


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_refuses_another_model_unless_forced(backend: str, tiny_bert: Path, tmp_path: Path) -> None:
    from conftest import build_tiny_bert

    from contrastkit.encoders import Encoder
    from contrastkit.search.store import model_fingerprint

    enc = _tiny_encoder(tiny_bert)
    other = Encoder.from_pretrained(str(build_tiny_bert(tmp_path / "other", seed=1)))  # same dim, other weights
    wider = Encoder.from_pretrained(str(build_tiny_bert(tmp_path / "wide", hidden=48)))
    fp = model_fingerprint(enc)
    assert fp["dim"] == 32 and model_fingerprint(_tiny_encoder(tiny_bert))["sha256"] == fp["sha256"]
    st = Store.create(tmp_path / "s", enc.dim, model=str(tiny_bert), fingerprint=fp, backend=backend)
    st.close()
    st = Store.open(tmp_path / "s")
    assert st.model == str(tiny_bert) and st.fingerprint == fp
    st.check_model("copy", model_fingerprint(_tiny_encoder(tiny_bert)))  # the same weights pass
    with pytest.raises(ConfigError, match="gives other embeddings.*--force"):
        st.check_model("other", model_fingerprint(other))
    st.check_model("other", model_fingerprint(other), force=True)
    with pytest.raises(ConfigError, match="48-d"):
        st.check_model("wide", model_fingerprint(wider), force=True)  # never comparable
    st.close()


@pytest.mark.skipif(not HAVE_LANCEDB, reason="needs contrastkit[vectordb]")
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_lancedb_search_equals_exact_search(metric: str, tmp_path: Path) -> None:
    """Full recall: the vector database's top-k (filtered or not) is brute-force search's, with its scores."""
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(2000, DIM)).astype(np.float32)
    meta = [{"g": int(i % 7), "even": bool(i % 2 == 0)} for i in range(2000)]
    queries = rng.normal(size=(20, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(2000)]
    st = Store.build(tmp_path / "s", DIM, "exact", embeddings=docs, ids=ids, metadata=meta, metric=metric,
                     backend="lancedb")
    st.delete([f"d{i}" for i in range(0, 2000, 13)])
    alive = np.asarray([i % 13 != 0 for i in range(2000)])
    d, q = docs, queries
    if metric == "cosine":
        d = docs / np.linalg.norm(docs, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for where, mask in [(None, alive), ({"g": 3}, alive & (np.arange(2000) % 7 == 3)),
                        ({"g": 3, "even": True}, alive & (np.arange(2000) % 14 == 10))]:
        exact = q @ d.T
        exact[:, ~mask] = -np.inf
        got = st.search(queries, 25, where=where)
        for row, hits in zip(exact, got):
            want = np.argsort(-row, kind="stable")[:min(25, int(mask.sum()))]
            assert [h.id for h in hits] == [f"d{i}" for i in want]
            np.testing.assert_allclose([h.score for h in hits], row[want], rtol=1e-5, atol=1e-5)
    st.close()


@pytest.mark.skipif(not HAVE_LANCEDB, reason="needs contrastkit[vectordb]")
@pytest.mark.parametrize("settings, message", [
    ("not json", "unreadable store"), (json.dumps({"backend": "lancedb", "format_version": 9, "dim": 16,
                                                   "kind": "exact", "metric": "cosine"}), "format_version"),
    (json.dumps({"backend": "lancedb", "format_version": 1, "dim": 16, "kind": "hnsw", "metric": "cosine"}), "'kind'"),
])
def test_lancedb_unreadable_store_gives_one_clear_error(settings: str, message: str, tmp_path: Path) -> None:
    with Store.create(tmp_path / "s", DIM, backend="lancedb") as st:
        st.add(None, vec([0, 1]), ids=["a", "b"])
    (tmp_path / "s" / "lancedb.json").write_text(settings)
    with pytest.raises(ConfigError, match="unreadable store") as err:
        Store.open(tmp_path / "s")
    assert message in str(err.value) and "lancedb.json" in str(err.value)
