"""Retrieval metrics, exact search and the BEIR loader."""

from __future__ import annotations

import json
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.beir import RetrievalTask, load_beir
from contrastkit.errors import DataError
from contrastkit.evaluation.retrieval import (
    average_precision_at_k,
    evaluate_retrieval,
    mrr_at_k,
    ndcg_at_k,
    rank_scores,
    recall_at_k,
    score_rankings,
    search,
)

L2_3 = math.log2(3)  # 1.5849625...
L2_6 = math.log2(6)  # 2.5849625...


# ----------------------------------------------------------------------------- per-query metrics
# Graded qrels with three relevant docs and a judged-non-relevant one; ranking: x b a y c
QREL = {"a": 3, "b": 2, "c": 1, "d": 0}
RANKED = ["x", "b", "a", "y", "c"]


def test_ndcg_graded_several_relevant() -> None:
    # DCG@5 = 0/log2(2) + 2/log2(3) + 3/log2(4) + 0/log2(5) + 1/log2(6)
    #       = 1.26186 + 1.5 + 0.38685 = 3.14871; nDCG@5 = 3.14871 / 4.76186 = 0.66124
    # IDCG@5 (grades 3, 2, 1 sorted; "d" has grade 0) = 3/1 + 2/log2(3) + 1/log2(4) = 3 + 1.26186 + 0.5 = 4.76186
    dcg5 = 2 / L2_3 + 3 / 2 + 1 / L2_6
    idcg = 3 + 2 / L2_3 + 1 / 2
    assert ndcg_at_k(RANKED, QREL, 5) == pytest.approx(dcg5 / idcg)
    assert ndcg_at_k(RANKED, QREL, 5) == pytest.approx(0.661236, abs=1e-6)
    # @3: DCG = 2/log2(3) + 3/2 = 2.76186; IDCG@3 = same 4.76186 (3 relevant fit in 3) -> 0.58000
    assert ndcg_at_k(RANKED, QREL, 3) == pytest.approx((2 / L2_3 + 1.5) / idcg)
    # @1: DCG = 0 -> 0; @2: DCG = 2/log2(3) = 1.26186, IDCG@2 = 3 + 2/log2(3) = 4.26186 -> 0.29608
    assert ndcg_at_k(RANKED, QREL, 1) == 0.0
    assert ndcg_at_k(RANKED, QREL, 2) == pytest.approx((2 / L2_3) / (3 + 2 / L2_3))
    # perfect order: 1.0
    assert ndcg_at_k(["a", "b", "c"], QREL, 10) == pytest.approx(1.0)


def test_mrr_recall_map_graded_several_relevant() -> None:
    # first relevant ("b") at rank 2
    assert mrr_at_k(RANKED, QREL, 5) == 0.5
    assert mrr_at_k(RANKED, QREL, 1) == 0.0
    # R = 3 (grade >= 1): top3 holds b, a -> 2/3; top5 holds all three -> 1
    assert recall_at_k(RANKED, QREL, 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, QREL, 5) == 1.0
    # AP@5 = (P@2 + P@3 + P@5) / R = (1/2 + 2/3 + 3/5) / 3 = 1.76667 / 3 = 0.58889
    assert average_precision_at_k(RANKED, QREL, 5) == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3)
    # AP@3 = (1/2 + 2/3) / 3 = 0.38889: divided by R = 3, the pytrec_eval map_cut definition
    assert average_precision_at_k(RANKED, QREL, 3) == pytest.approx((1 / 2 + 2 / 3) / 3)
    # map_cut divides by R, not min(R, k): a hit at rank 1 with R = 3 gives 1/3 at k = 1
    assert average_precision_at_k(["a"], QREL, 1) == pytest.approx(1 / 3)


def test_relevant_doc_not_retrieved_and_k_beyond_ranking() -> None:
    # the only relevant doc "z" is not in the ranking: everything 0
    for f in (ndcg_at_k, mrr_at_k, recall_at_k, average_precision_at_k):
        assert f(["x", "y"], {"z": 1}, 10) == 0.0
    # k = 100 > 2 ranked docs (corpus of 2): relevant "y" at rank 2
    q = {"y": 1}
    assert ndcg_at_k(["x", "y"], q, 100) == pytest.approx(1 / L2_3)  # DCG 1/log2(3), IDCG 1
    assert mrr_at_k(["x", "y"], q, 100) == 0.5
    assert recall_at_k(["x", "y"], q, 100) == 1.0
    assert average_precision_at_k(["x", "y"], q, 100) == 0.5  # P@2 / R = (1/2) / 1


def test_metric_argument_errors() -> None:
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(ValueError):
        recall_at_k(["a", "a"], {"a": 1}, 5)


def test_score_rankings_excludes_queries_without_relevant_docs() -> None:
    qrels = {
        "q1": {"a": 1},          # a at rank 1 -> ndcg 1, mrr 1, recall 1, map 1
        "q2": {"b": 1, "c": 1},  # b at rank 2, c missing -> mrr 1/2, recall@10 1/2, map (1/2)/2 = 1/4
        "q3": {"a": 0},          # no relevant document: excluded
        "q4": {"c": 2},          # not in the rankings: counts as an empty ranking -> all 0
    }
    rankings = {"q1": ["a", "b"], "q2": ["a", "b"], "q3": ["a"]}
    res = score_rankings(rankings, qrels, [("mrr", 10), ("recall", 10), ("map", 10), ("ndcg", 10)])
    assert res["n_queries"] == 3 and res["n_excluded"] == 1
    assert res["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert res["recall@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert res["map@10"] == pytest.approx((1 + 0.25 + 0) / 3)
    # q2: DCG = 1/log2(3) = 0.63093, IDCG = 1 + 1/log2(3) = 1.63093 -> 0.38685
    assert res["ndcg@10"] == pytest.approx((1 + (1 / L2_3) / (1 + 1 / L2_3) + 0) / 3)
    with pytest.raises(ValueError):
        score_rankings(rankings, qrels, [("p", 10)])
    with pytest.raises(ValueError):
        score_rankings(rankings, {"q3": {"a": 0}})


# ----------------------------------------------------------------------------- ties and search
def test_rank_scores_ties_by_corpus_order() -> None:
    s = np.array([[0.5, 0.9, 0.5, 0.9, np.nan],
                  [0.0, 0.0, 0.0, 0.0, 0.0]])
    # row 0: 0.9 at 1 and 3 (lower index first), then 0.5 at 0 and 2, NaN last
    assert rank_scores(s).tolist() == [[1, 3, 0, 2, 4], [0, 1, 2, 3, 4]]
    assert rank_scores(s, 3).tolist() == [[1, 3, 0], [0, 1, 2]]
    # relevant doc 2 follows d1, d3 (0.9) and its tie d0 (0.5, lower index): rank 4 -> MRR 1/4
    ids = ["d0", "d1", "d2", "d3", "d4"]
    ranked = [ids[j] for j in rank_scores(s)[0]]
    assert mrr_at_k(ranked, {"d2": 1}, 10) == 0.25
    assert mrr_at_k(ranked, {"d0": 1}, 10) == pytest.approx(1 / 3)  # d0 wins the tie: rank 3


def test_search_ties_are_deterministic_across_chunks() -> None:
    corpus = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    expected = [[0, 2, 4], [1, 3, 0], [0, 1, 2]]  # [1,1] ties all five -> corpus order
    for chunk in (1, 2, 3, 5, 100):
        for qc in (1, 2, 8):
            vals, idx = search(queries, corpus, 3, chunk=chunk, query_chunk=qc)
            assert idx.tolist() == expected, (chunk, qc)
            assert vals.shape == (3, 3)
    _, idx = search(queries, corpus, 100, chunk=2)  # k larger than the corpus: everything, ranked
    assert idx.tolist() == [[0, 2, 4, 1, 3], [1, 3, 0, 2, 4], [0, 1, 2, 3, 4]]


def _brute_force(q: np.ndarray, c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ cn.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), order


def test_search_matches_numpy_argsort_on_random_data() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 8)).astype(np.float32)
    c = rng.normal(size=(203, 8)).astype(np.float32)
    want_v, want_i = _brute_force(q, c, 10)
    for chunk, qc in ((50, 16), (203, 37), (7, 5)):
        vals, idx = search(q, c, 10, chunk=chunk, query_chunk=qc)
        np.testing.assert_array_equal(idx.numpy(), want_i)
        np.testing.assert_allclose(vals.numpy(), want_v, atol=1e-5)
    # torch input, and a corpus of exact unit vectors with massive exact ties
    basis = np.eye(4, dtype=np.float32)
    c2 = basis[rng.integers(0, 4, size=60)]
    _, want2 = _brute_force(q[:, :4], c2, 25)
    _, idx2 = search(torch.from_numpy(q[:, :4]), torch.from_numpy(c2), 25, chunk=9, query_chunk=4)
    np.testing.assert_array_equal(idx2.numpy(), want2)


def test_search_argument_errors() -> None:
    with pytest.raises(ValueError):
        search(np.ones((2, 3)), np.ones((4, 2)), 1)
    with pytest.raises(ValueError):
        search(np.ones((2, 3)), np.ones((4, 3)), 0)


# ----------------------------------------------------------------------------- BEIR loader
def _write_beir(root: Path, corpus: list[object] | None = None, queries: list[object] | None = None,
                qrels: str | None = None, split: str = "test") -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Cats", "text": "the cat sat on the mat"},
        {"_id": "d2", "title": "", "text": "a dog ran in the park"},
        {"_id": 3, "text": "rain fell on the river"},  # numeric id, no title
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "cat on mat"},
        {"_id": "q2", "text": "dog park"},
        {"_id": "q3", "text": "the river rain"},
        {"_id": "q9", "text": "not judged"},
    ]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td1\t0\nq3\t3\t1\n"
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (root / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels)
    return root


def test_load_beir_happy_path(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = load_beir(_write_beir(tmp_path / "toy"))
    assert task.corpus_ids == ["d1", "d2", "3"]
    assert task.corpus_texts == ["Cats the cat sat on the mat", "a dog ran in the park", "rain fell on the river"]
    assert task.query_ids == ["q1", "q2", "q3"]  # q9 has no judgement: dropped, as BEIR does
    assert task.query_texts == ["cat on mat", "dog park", "the river rain"]
    assert task.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}, "q3": {"3": 1}}
    assert task.n_dropped_qrels == 0 and task.name == "toy/test" and len(task) == 3


def test_load_beir_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_beir(tmp_path / "nowhere")
    root = _write_beir(tmp_path / "t")
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        load_beir(root, "dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"queries\.jsonl: file not found"):
        load_beir(root)


@pytest.mark.parametrize("corpus, pattern", [
    ([{"_id": "d1", "text": "x"}, '{"_id": "d2", "text": '], r"corpus\.jsonl:2: invalid JSON"),
    ([{"_id": "d1", "text": "x"}, "", {"text": "no id"}], r"corpus\.jsonl:3: missing \"_id\""),
    ([{"_id": "d1", "text": "x"}, {"_id": "d1", "text": "y"}], r"corpus\.jsonl:2: duplicate \"_id\""),
    ([["not", "an", "object"]], r"corpus\.jsonl:1: expected a JSON object"),
    ([{"_id": "d1", "text": 5}], r"corpus\.jsonl:1: \"text\" must be a string"),
])
def test_load_beir_bad_corpus(tmp_path: Path, corpus: list[object], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_beir(_write_beir(tmp_path / "t", corpus=corpus, qrels="query-id\tcorpus-id\tscore\n"))


def test_load_beir_bad_query_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"queries\.jsonl:2: missing \"_id\""):
        load_beir(_write_beir(tmp_path / "t", queries=[{"_id": "q1", "text": "a"}, {"text": "b"}]))


@pytest.mark.parametrize("qrels, pattern", [
    ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv:2: expected 3 tab-separated fields"),
    ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test\.tsv:2: score must be an integer"),
    ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", r"test\.tsv:3: duplicate judgement"),
])
def test_load_beir_bad_qrels(tmp_path: Path, qrels: str, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_beir(_write_beir(tmp_path / "t", qrels=qrels))


def test_load_beir_unknown_ids_warn_or_error(tmp_path: Path) -> None:
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t1\nq404\td2\t1\nq2\td2\t1\n"
    root = _write_beir(tmp_path / "t", qrels=qrels)
    with pytest.warns(UserWarning, match=r"dropped 2 judgement.*test\.tsv:3: unknown document 'gone'"):
        task = load_beir(root)
    assert task.n_dropped_qrels == 2
    assert task.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    with pytest.raises(DataError, match=r"test\.tsv:3: unknown document 'gone'"):
        load_beir(root, on_unknown="error")
    # no header: the first line is data
    task = load_beir(_write_beir(tmp_path / "h", qrels="q1\td1\t1\n"))
    assert task.qrels == {"q1": {"d1": 1}}


# ----------------------------------------------------------------------------- end to end
def _bow(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), 101), dtype=np.float32)
    for i, t in enumerate(texts):
        for tok in t.lower().split():
            out[i, zlib.crc32(tok.encode()) % 101] += 1.0
    return out


def test_evaluate_retrieval_end_to_end(tmp_path: Path) -> None:
    task = load_beir(_write_beir(tmp_path / "toy"))
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return _bow(texts)

    res = evaluate_retrieval(encode, task)
    assert calls == [3, 3]  # corpus once, then the three judged queries
    for key in ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100"):
        assert res[key] == pytest.approx(100.0), key
    assert res["n_queries"] == 3 and res["n_excluded"] == 0 and res["n_corpus"] == 3


def test_evaluate_retrieval_ignores_identical_ids_and_excludes_unjudged() -> None:
    # Quora-style: the query text is also document "q1", which must not count as a hit
    task = RetrievalTask(corpus_ids=["q1", "d1", "d2"], corpus_texts=["red apple", "red apple pie", "blue sky"],
                         query_ids=["q1", "q2"], query_texts=["red apple", "blue"],
                         qrels={"q1": {"d1": 1}, "q2": {"d2": 0}})
    res = evaluate_retrieval(_bow, task, ks=(1,))
    assert res["n_queries"] == 1 and res["n_excluded"] == 1
    assert res["recall@1"] == pytest.approx(100.0)
    # without the filter "q1" itself ranks first: d1 at rank 2 -> MRR 50, Recall@1 0
    res = evaluate_retrieval(_bow, task, ks=(1,), ignore_identical_ids=False)
    assert res["mrr@10"] == pytest.approx(50.0) and res["recall@1"] == 0.0
