"""Vector indexes: exact matches brute force, FAISS kinds agree with it, save/load round-trips, removal."""

from __future__ import annotations

import numpy as np
import pytest

from contrastkit.errors import ConfigError
from contrastkit.search import INDEX_KINDS, build_index, load_index
from contrastkit.search.index import topk_inner_product


def _data(n: int = 2000, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((20, d)).astype(np.float32)


def _brute(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def test_topk_kernel_matches_numpy_across_chunks() -> None:
    x, q = _data()
    want = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :7]
    for chunk in (7, 333, 5000):
        scores, rows = topk_inner_product(q, x, 7, chunk=chunk)
        assert (rows == want).all()
        assert np.allclose(scores, np.take_along_axis(q @ x.T, want, 1), atol=1e-4)
    scores, rows = topk_inner_product(q, x[:3], 5)  # fewer vectors than k: padded with -1
    assert (rows[:, 3:] == -1).all() and np.isinf(scores[:, 3:]).all()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_kinds_agree_with_brute_force_and_round_trip(kind: str, tmp_path) -> None:
    x, q = _data()
    params = {"nlist": 8, "nprobe": 8, "m": 8, "nbits": 6} if kind == "ivfpq" else {}
    ix = build_index(kind, 24, **params)
    ids = np.arange(1000, 1000 + len(x))
    ix.add(x, ids)
    assert len(ix) == len(x) and set(ix.ids().tolist()) == set(ids.tolist())
    scores, got = ix.search(q, 10)
    want = ids[_brute(x, q, 10)]
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= (0.5 if kind == "ivfpq" else 0.99), recall
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # sorted by score
    if kind in ("exact", "flat"):
        assert (got == want).all()
    ix.save(tmp_path / "ix")
    back = load_index(tmp_path / "ix")
    assert back.kind == kind and back.metric == "cosine" and len(back) == len(x)
    s2, g2 = back.search(q, 10)
    assert (g2 == got).all() and np.allclose(s2, scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["exact", "flat", "ivfpq"])
def test_remove_drops_vectors(kind: str) -> None:
    x, q = _data()
    params = {"nlist": 8, "nprobe": 8, "m": 4, "nbits": 6} if kind == "ivfpq" else {}
    ix = build_index(kind, 24, **params)
    ix.add(x)  # ids default to 0..n-1
    _, top = ix.search(x[:5], 1)
    assert ix.remove(top[:, 0]) == 5 and len(ix) == len(x) - 5
    _, after = ix.search(x[:5], 3)
    assert not set(after.ravel().tolist()) & set(top[:, 0].tolist())


def test_hnsw_cannot_remove_and_ip_metric_is_raw() -> None:
    x, _ = _data(200)
    h = build_index("hnsw", 24)
    h.add(x)
    assert not h.supports_remove
    with pytest.raises(NotImplementedError):
        h.remove([0])
    ip = build_index("exact", 24, metric="ip")
    ip.add(np.stack([np.ones(24), 3 * np.ones(24)]).astype(np.float32))
    scores, ids = ip.search(np.ones(24, np.float32), 2)
    assert ids[0].tolist() == [1, 0] and np.allclose(scores[0], [72.0, 24.0])


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ConfigError, match="unknown index kind"):
        build_index("annoy", 8)
    with pytest.raises(ConfigError, match="no parameter"):
        build_index("hnsw", 8, efsearch=5)
    with pytest.raises(ConfigError, match="must divide"):
        build_index("ivfpq", 10, m=3)
    ix = build_index("exact", 8)
    with pytest.raises(ConfigError, match=r"shape \(n, 8\)"):
        ix.add(np.zeros((2, 9), np.float32))
    ivf = build_index("ivfpq", 8, nlist=4, nbits=8)
    with pytest.raises(ConfigError, match="at least 256 vectors"):
        ivf.add(np.ones((10, 8), np.float32))


@pytest.mark.parametrize("kind", ["exact", "flat"])
def test_search_of_an_empty_index_returns_no_ids(kind: str) -> None:
    ix = build_index(kind, 8)
    q = np.ones((2, 8), np.float32)
    scores, ids = ix.search(q, 3)
    assert ids.shape == (2, 3) and (ids == -1).all() and np.isinf(scores).all()
    ix.add(np.eye(8, dtype=np.float32)[:2], [5, 6])
    ix.remove([5, 6])
    scores, ids = ix.search(q, 3)
    assert (ids == -1).all()
