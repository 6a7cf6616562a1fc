"""EmbeddingCache: same arrays as uncached encoding, hit/miss counts, pickle-free disk shards, fingerprints."""

from __future__ import annotations

import json
import shutil
import zlib

import numpy as np
import pytest

from contrastkit.errors import ConfigError
from contrastkit.evaluation.cache import EmbeddingCache, model_fingerprint

from conftest import make_sentences


class CountingBow:
    """Deterministic bag-of-words hashing encoder that records what it was asked to encode."""

    def __init__(self, dim: int = 24) -> None:
        self.dim = dim
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                h = zlib.crc32(w.encode())
                out[i, h % self.dim] += 1.0 if h & 1 << 20 else -1.0
        return out


def test_same_arrays_and_counts_in_memory():
    enc = CountingBow()
    cache = EmbeddingCache(enc)
    a = make_sentences(30, seed=1)
    b = a[10:] + make_sentences(5, seed=2) + a[:3]
    ra = cache(a)
    assert ra.dtype == np.float32 and np.array_equal(ra, CountingBow()(a))
    distinct_a = len(set(a))
    assert (cache.misses, cache.hits) == (distinct_a, len(a) - distinct_a)
    rb = cache(b)
    assert np.array_equal(rb, CountingBow()(b))
    new_b = len(set(b) - set(a))
    assert cache.misses == distinct_a + new_b and len(enc.seen) == cache.misses
    assert len(enc.seen) == len(set(enc.seen))  # no text encoded twice
    assert cache.stats()["calls"] == 2 and len(cache) == len(set(a) | set(b))
    assert cache([]).shape == (0, 24)


def test_disk_cache_round_trip_without_pickle(tmp_path):
    texts = make_sentences(40, seed=3)
    first = EmbeddingCache(CountingBow(), cache_dir=tmp_path, fingerprint="m1")
    ref = first(texts)
    shards = sorted((tmp_path / "m1").glob("shard-*"))
    assert {p.suffix for p in shards} == {".npy", ".json"}
    for p in shards:
        if p.suffix == ".npy":
            np.load(p, allow_pickle=False)
        else:
            assert len(json.loads(p.read_text())["keys"]) == len(set(texts))
    enc2 = CountingBow()
    second = EmbeddingCache(enc2, cache_dir=tmp_path, fingerprint="m1")
    got = second(texts[::-1])
    assert np.array_equal(got, ref[::-1])
    assert enc2.seen == [] and second.disk_hits == len(set(texts)) and second.misses == 0
    # another model: nothing shared
    enc3 = CountingBow()
    EmbeddingCache(enc3, cache_dir=tmp_path, fingerprint="m2")(texts)
    assert len(enc3.seen) == len(set(texts))
    with pytest.raises(ConfigError, match="fingerprint"):
        EmbeddingCache(CountingBow(), cache_dir=tmp_path)


def test_fingerprint_follows_weights(tiny_bert, tmp_path):
    assert model_fingerprint(tiny_bert) == model_fingerprint(tiny_bert)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    fp = model_fingerprint(copy)
    assert fp != model_fingerprint(tiny_bert)  # other path
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert model_fingerprint(copy) != fp
    assert model_fingerprint(copy, {"pooling": "cls"}) != model_fingerprint(copy, {"pooling": "mean"})
    assert model_fingerprint("sentence-transformers/all-MiniLM-L6-v2") == \
        model_fingerprint("sentence-transformers/all-MiniLM-L6-v2")


def test_tiny_bert_cached_equals_uncached(tiny_bert):
    from contrastkit.encoders import Encoder

    enc = Encoder.from_pretrained(str(tiny_bert), backend="torch")
    texts = make_sentences(20, seed=4)
    cache = EmbeddingCache(enc.encode)
    cache(texts[:8])
    got = cache(texts)
    np.testing.assert_allclose(got, enc.encode(texts), rtol=1e-5, atol=1e-6)
    assert cache.misses == len(set(texts)) and cache.hits == 8


def test_shared_across_suites():
    """Transfer TREC, then clustering TREC: the second suite encodes nothing new."""
    from contrastkit.evaluation.clustering import evaluate_clustering
    from contrastkit.evaluation.senteval import resolve_senteval_dir
    from contrastkit.evaluation.transfer import evaluate_transfer

    try:
        ok = (resolve_senteval_dir() / "TREC").is_dir()
    except Exception:  # noqa: BLE001
        ok = False
    if not ok:
        pytest.skip("SentEval data missing")
    enc = CountingBow(64)
    cache = EmbeddingCache(enc)
    r1 = evaluate_transfer(cache, ["TREC"], kfold=3)
    n = cache.misses
    r2 = evaluate_clustering(cache, ["TREC"], n_runs=1)
    assert cache.misses == n and cache.hits == n  # clustering asks for the same distinct questions
    uncached = evaluate_transfer(CountingBow(64), ["TREC"], kfold=3)
    assert r1.tasks["TREC"].acc == uncached.tasks["TREC"].acc
    assert r2.tasks["TREC"].v_measure >= 0
