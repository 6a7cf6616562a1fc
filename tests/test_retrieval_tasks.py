"""Paraphrase-retrieval tasks built from local data: documented structure, no self-matches, suite results."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import numpy as np
import pytest

from contrastkit.errors import DataError
from contrastkit.evaluation.retrieval_tasks import (
    build_retrieval_task,
    evaluate_retrieval_suite,
    paraphrase_task,
)
from contrastkit.evaluation.senteval import resolve_senteval_dir

try:
    HAVE_DATA = (resolve_senteval_dir() / "MRPC").is_dir()
except Exception:  # noqa: BLE001
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="SentEval data (../shared/data/senteval) missing")


def _vec(text: str, dim: int = 32) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim)


def noise(texts: list[str]) -> np.ndarray:
    return np.stack([_vec(t) for t in texts])


def partner_encoder(task):
    """Sentences linked by qrels share a base vector (plus small noise): partners are near, self is nearest."""
    parent = {i: i for i in task.corpus_ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for q, rel in task.qrels.items():
        for d in rel:
            parent[find(q)] = find(d)
    root_of = {t: find(i) for i, t in zip(task.corpus_ids, task.corpus_texts)}
    return lambda texts: np.stack([_vec(root_of[t]) + 0.05 * _vec("n" + t) for t in texts])


def test_paraphrase_task_structure():
    pairs = [("a", "b"), ("a", "c"), ("d", "e"), ("f", "f"), ("b", "g")]
    t = paraphrase_task("toy", pairs, [True, True, False, True, True])
    assert t.corpus_texts == ["a", "b", "c", "d", "e", "f", "g"]
    ids = dict(zip(t.corpus_texts, t.corpus_ids))
    rel = {t.query_texts[i]: {next(k for k, v in ids.items() if v == d) for d in t.qrels[q]}
           for i, q in enumerate(t.query_ids)}
    assert rel == {"a": {"b", "c"}, "b": {"a", "g"}, "c": {"a"}, "g": {"b"}}  # d/e negative, (f, f) skipped
    assert t.extra["n_identical_pairs"] == 1 and t.extra["n_positive_pairs"] == 4 and t.extra["n_links"] == 3
    for q, text in zip(t.query_ids, t.query_texts):
        assert ids[text] == q and q not in t.qrels[q]  # query id = own corpus id, never its own relevant doc


@needs_data
@pytest.mark.parametrize("name,n_pos,n_pairs", [("STSB-paraphrase", 338, 1379), ("SICK-paraphrase", 938, 4927),
                                                 ("MRPC-paraphrase", 1147, 1725)])
def test_local_tasks_have_documented_counts(name, n_pos, n_pairs):
    t = build_retrieval_task(name)
    assert (t.extra["n_positive_pairs"], t.extra["n_pairs"]) == (n_pos, n_pairs)
    assert len(set(t.corpus_texts)) == len(t.corpus_texts)  # distinct sentences
    n_links = sum(len(r) for r in t.qrels.values())
    assert n_links == 2 * t.extra["n_links"]  # both directions of every distinct positive pair
    assert n_pos - 10 <= t.extra["n_links"] <= n_pos  # few pairs are listed twice
    corpus = dict(zip(t.corpus_ids, t.corpus_texts))
    for q, text in zip(t.query_ids, t.query_texts):
        assert corpus[q] == text and q not in t.qrels[q]
        for d in t.qrels[q]:
            assert q in t.qrels[d]  # symmetric
    assert max(len(r) for r in t.qrels.values()) >= 2  # some sentence has several partners


@needs_data
def test_suite_excludes_self_and_rewards_partners():
    task = build_retrieval_task("MRPC-paraphrase")
    r = evaluate_retrieval_suite(partner_encoder(task), ["MRPC-paraphrase"])
    m = r.tasks["MRPC-paraphrase"]
    # Each query's own text is its nearest vector; had it not been excluded, MRR@10 would be <= 50.
    assert m["mrr@10"] > 95 and m["recall@10"] > 95
    assert m["n_queries"] == len(task.query_ids) and m["n_corpus"] == len(task.corpus_ids)
    bad = evaluate_retrieval_suite(noise, ["STSB-paraphrase", "MRPC-paraphrase"], limit=200)
    assert bad.tasks["MRPC-paraphrase"]["recall@10"] < 5
    assert bad.tasks["STSB-paraphrase"]["n_queries"] == 200 and bad.tasks["STSB-paraphrase"]["n_corpus"] == 2551
    d = bad.to_dict()
    assert d["suite"] == "retrieval" and d["main_metric"] == "ndcg@10" and d["skipped"] == {}
    assert set(d["tasks"]["STSB-paraphrase"]) >= {"ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100",
                                                   "map@100"}
    assert d["average"] == pytest.approx(np.mean([d["tasks"][t]["ndcg@10"] for t in d["tasks"]]))
    json.dumps(d)
    assert "| STSB-paraphrase |" in bad.to_markdown()


def test_bible_skipped_with_message_when_diatheke_missing(monkeypatch):
    import contrastkit.data.embedded as emb

    def missing(name):
        raise DataError("embedded 'bible' data needs the 'diatheke' program (Debian package 'diatheke')")

    monkeypatch.setattr(emb, "embedded_pairs", missing)
    with pytest.warns(UserWarning, match="diatheke"):
        r = evaluate_retrieval_suite(noise, ["Bible-KJV-WEB"])
    assert r.tasks == {} and "diatheke" in r.skipped["Bible-KJV-WEB"]
    assert "Skipped Bible-KJV-WEB" in r.to_markdown() and r.to_dict()["average"] is None


def _bible_available() -> bool:
    from contrastkit.data.embedded import _cache_file

    return shutil.which("diatheke") is not None or _cache_file().is_file()


@pytest.mark.skipif(not _bible_available(), reason="diatheke (Debian) not installed and no extracted Bible cache")
def test_bible_task_structure():
    t = build_retrieval_task("Bible-KJV-WEB")
    assert len(t.query_ids) == 3781 and all(len(r) == 1 for r in t.qrels.values())
    assert not set(t.query_ids) & set(t.corpus_ids)
    assert len(set(t.corpus_texts)) == len(t.corpus_texts) <= 3781
    hits = Counter(d for r in t.qrels.values() for d in r)
    assert set(hits) == set(t.corpus_ids)  # every WEB verse is some KJV verse's target
