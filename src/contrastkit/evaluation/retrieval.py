"""Retrieval evaluation: exact cosine search and BEIR / pytrec_eval-style ranking metrics.

Definitions (per query; ``rel(d)`` is the qrels grade of document ``d``, 0 when unjudged;
a document is *relevant* when ``rel(d) >= 1``, pytrec_eval's default relevance level;
``R`` is the number of relevant documents of the query; ranks are 1-based):

* ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{r<=k} max(rel(d_r), 0) / log2(r + 1)``
  (linear gain, as trec_eval's ``ndcg_cut``); ``IDCG@k`` is the DCG@k of the qrels grades
  sorted in decreasing order, i.e. the best ranking the judgements allow.
* ``MRR@k``: ``1 / r`` for the first relevant document at rank ``r <= k``, else 0 (BEIR's ``mrr``).
* ``Recall@k``: relevant documents in the top k divided by ``R`` (pytrec_eval ``recall_k``).
* ``MAP@k``: ``sum over relevant d_r with r <= k of Precision@r``, divided by ``R`` -- the total
  number of relevant documents, not ``min(R, k)`` (pytrec_eval ``map_cut_k``, which BEIR reports
  as ``MAP@k``). So a query with 20 relevant documents cannot reach MAP@10 = 1.

Aggregation: the mean over queries that have at least one relevant document; queries without
any (no qrels, or only grades <= 0) are excluded and counted (trec_eval would score them 0 or
skip them depending on where they appear; excluding is BEIR's effective behaviour since its
qrels only list queries with judgements). A judged query missing from the rankings counts as
an empty ranking (all metrics 0).

Ties: documents are ranked by score, descending, and equal scores by corpus order (lower
index first). :func:`search` and :func:`rank_scores` both follow this rule exactly, so
results do not depend on chunk sizes or on ``torch.topk``'s unspecified tie order. Note that
trec_eval itself breaks ties by document id (descending), so on tied scores its numbers can
differ from ours; with continuous embeddings exact ties are rare.

:func:`evaluate_retrieval` reports every metric x 100 (as the other contrastkit evaluations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from contrastkit.data.beir import RetrievalTask

__all__ = [
    "EncodeFn",
    "average_precision_at_k",
    "evaluate_retrieval",
    "mrr_at_k",
    "ndcg_at_k",
    "normalize_embeddings",
    "rank_scores",
    "recall_at_k",
    "score_rankings",
    "search",
]

EncodeFn = Callable[[list[str]], Any]
"""An encoder: a list of texts in, an ``(n, d)`` array (numpy or torch) out."""

Qrel = Mapping[Any, int]


# ----------------------------------------------------------------------------- per-query metrics
def _check_ranking(ranked: Sequence[Hashable], k: int) -> list[Hashable]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = list(ranked[:k])
    if len(set(top)) != len(top):
        raise ValueError("a ranking lists the same document twice")
    return top


def _n_relevant(qrel: Qrel) -> int:
    return sum(1 for g in qrel.values() if g >= 1)


def ndcg_at_k(ranked: Sequence[Hashable], qrel: Qrel, k: int) -> float:
    """nDCG@k of one ranking: linear gain, log2(rank + 1) discount, ideal DCG from the qrels."""
    top = _check_ranking(ranked, k)
    dcg = sum(max(qrel.get(d, 0), 0) / math.log2(r + 1) for r, d in enumerate(top, 1))
    ideal = sorted((g for g in qrel.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(r + 1) for r, g in enumerate(ideal, 1))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranked: Sequence[Hashable], qrel: Qrel, k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 if none)."""
    for r, d in enumerate(_check_ranking(ranked, k), 1):
        if qrel.get(d, 0) >= 1:
            return 1.0 / r
    return 0.0


def recall_at_k(ranked: Sequence[Hashable], qrel: Qrel, k: int) -> float:
    """Share of the query's relevant documents found in the top k (0 if it has none)."""
    n_rel = _n_relevant(qrel)
    if n_rel == 0:
        return 0.0
    return sum(1 for d in _check_ranking(ranked, k) if qrel.get(d, 0) >= 1) / n_rel


def average_precision_at_k(ranked: Sequence[Hashable], qrel: Qrel, k: int) -> float:
    """Average precision cut at k, divided by the total number of relevant documents (map_cut_k)."""
    n_rel = _n_relevant(qrel)
    top = _check_ranking(ranked, k)
    if n_rel == 0:
        return 0.0
    hits = 0
    total = 0.0
    for r, d in enumerate(top, 1):
        if qrel.get(d, 0) >= 1:
            hits += 1
            total += hits / r
    return total / n_rel


_METRICS: dict[str, Callable[[Sequence[Hashable], Qrel, int], float]] = {
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "recall": recall_at_k,
    "map": average_precision_at_k,
}


def score_rankings(rankings: Mapping[Any, Sequence[Hashable]], qrels: Mapping[Any, Qrel],
                   metrics: Sequence[tuple[str, int]] = (("ndcg", 10), ("mrr", 10), ("recall", 1),
                                                         ("recall", 10), ("recall", 100), ("map", 100)),
                   ) -> dict[str, float]:
    """Mean of each (metric, k) over judged queries with a relevant document, as fractions in [0, 1].

    ``metrics`` names are ``ndcg``, ``mrr``, ``recall``, ``map``; keys are ``"<name>@<k>"``.
    Also returns ``n_queries`` (scored) and ``n_excluded`` (judged but without a relevant document).
    """
    for name, _ in metrics:
        if name not in _METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {sorted(_METRICS)}")
    sums = {f"{n}@{k}": 0.0 for n, k in metrics}
    n_q = n_excl = 0
    for qid, qrel in qrels.items():
        if _n_relevant(qrel) == 0:
            n_excl += 1
            continue
        n_q += 1
        ranked = rankings.get(qid, ())
        for n, k in metrics:
            sums[f"{n}@{k}"] += _METRICS[n](ranked, qrel, k)
    if n_q == 0:
        raise ValueError("no query has a relevant document")
    out: dict[str, float] = {key: v / n_q for key, v in sums.items()}
    out["n_queries"] = n_q
    out["n_excluded"] = n_excl
    return out


# ----------------------------------------------------------------------------- ranking and search
def rank_scores(scores: Any, k: int | None = None) -> np.ndarray:
    """Indices of the top-k columns of each row of a score matrix: score descending, ties by lower index."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected a (queries, documents) score matrix, got shape {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, axis=1, kind="stable")
    return order if k is None else order[:, :k]


def normalize_embeddings(x: Any) -> torch.Tensor:
    """An ``(n, d)`` float32 CPU tensor of unit rows (NaN/inf replaced) from a numpy array or tensor."""
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.float()
    if t.ndim != 2:
        raise ValueError(f"expected an (n, d) embedding matrix, got shape {tuple(t.shape)}")
    return torch.nn.functional.normalize(torch.nan_to_num(t), dim=-1)


def _sort_pairs(vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row's (value, index) pairs by value descending, then index ascending."""
    o = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, o), idx.gather(1, o)
    o = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return vals.gather(1, o), idx.gather(1, o)


def _block_topk(sims: torch.Tensor, k: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact first-k (score desc, index asc) of each row of one score block, indices shifted by offset."""
    vals, idx = torch.topk(sims, k, dim=1)
    kth = vals[:, -1:]
    # topk may pick any of several entries tied with the k-th value: redo those rows exactly
    for r in torch.nonzero((sims >= kth).sum(dim=1) > k).flatten().tolist():
        cand = torch.nonzero(sims[r] >= kth[r]).flatten()  # ascending index
        o = torch.sort(sims[r, cand], descending=True, stable=True).indices[:k]
        vals[r], idx[r] = sims[r, cand[o]], cand[o]
    vals, idx = _sort_pairs(vals, idx)
    return vals, idx + offset


def search(query_emb: Any, corpus_emb: Any, k: int, *, chunk: int = 50_000,
           query_chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine top-k: ``(scores, indices)`` of shape ``(n_queries, min(k, n_corpus))``, ties by corpus order.

    The score matrix is computed block by block (``query_chunk`` queries x ``chunk`` documents)
    and the running top-k merged, so memory stays ``O(query_chunk * (chunk + k))``.
    """
    if k < 1 or chunk < 1 or query_chunk < 1:
        raise ValueError("k, chunk and query_chunk must be >= 1")
    q = normalize_embeddings(query_emb)
    c = normalize_embeddings(corpus_emb)
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != corpus dim {c.shape[1]}")
    n_c = c.shape[0]
    kk = min(k, n_c)
    if q.shape[0] == 0 or kk == 0:
        return torch.zeros(q.shape[0], kk), torch.zeros(q.shape[0], kk, dtype=torch.long)
    out_v, out_i = [], []
    for qs in range(0, q.shape[0], query_chunk):
        qb = q[qs:qs + query_chunk]
        best_v: torch.Tensor | None = None
        best_i: torch.Tensor | None = None
        for cs in range(0, n_c, chunk):
            sims = qb @ c[cs:cs + chunk].T
            v, i = _block_topk(sims, min(kk, sims.shape[1]), cs)
            if best_v is None or best_i is None:
                best_v, best_i = v, i
            else:
                # earlier blocks hold lower indices, so the merge keeps the tie rule
                best_v, best_i = _sort_pairs(torch.cat([best_v, v], 1), torch.cat([best_i, i], 1))
                best_v, best_i = best_v[:, :kk], best_i[:, :kk]
        assert best_v is not None and best_i is not None
        out_v.append(best_v)
        out_i.append(best_i)
    return torch.cat(out_v), torch.cat(out_i)


# ----------------------------------------------------------------------------- end to end
def evaluate_retrieval(encode_fn: EncodeFn, task: RetrievalTask, ks: Sequence[int] = (1, 10, 100), *,
                       ndcg_k: int = 10, mrr_k: int = 10, map_k: int = 100,
                       ignore_identical_ids: bool = True, chunk: int = 50_000,
                       query_chunk: int = 1024) -> dict[str, Any]:
    """Encode the corpus once, search every judged query, return nDCG@10, MRR@10, Recall@ks, MAP@100 (x 100).

    Queries without a relevant document are not encoded and are counted in ``n_excluded``.
    With ``ignore_identical_ids`` (BEIR's default) a document whose id equals the query id is
    dropped from that query's ranking (matters for e.g. Quora, ArguAna).
    """
    if not ks or min(ks) < 1 or min(ndcg_k, mrr_k, map_k) < 1:
        raise ValueError("every k must be >= 1")
    judged = [i for i, qid in enumerate(task.query_ids) if _n_relevant(task.qrels.get(qid, {})) > 0]
    if not judged:
        raise ValueError(f"task {task.name!r}: no query has a relevant document")
    depth = max(*ks, ndcg_k, mrr_k, map_k)
    t0 = time.perf_counter()
    c = encode_fn(list(task.corpus_texts))
    q = encode_fn([task.query_texts[i] for i in judged])
    encode_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    _, idx = search(q, c, depth + (1 if ignore_identical_ids else 0), chunk=chunk, query_chunk=query_chunk)
    search_s = time.perf_counter() - t1
    rankings: dict[str, list[str]] = {}
    for row, qi in enumerate(judged):
        qid = task.query_ids[qi]
        docs = [task.corpus_ids[j] for j in idx[row].tolist()]
        if ignore_identical_ids:
            docs = [d for d in docs if d != qid]
        rankings[qid] = docs[:depth]
    qrels = {task.query_ids[i]: task.qrels[task.query_ids[i]] for i in judged}
    metrics = [("ndcg", ndcg_k), ("mrr", mrr_k), *[("recall", k) for k in ks], ("map", map_k)]
    scores = score_rankings(rankings, qrels, metrics)
    out: dict[str, Any] = {key: scores[key] * 100.0 for key in dict.fromkeys(f"{n}@{k}" for n, k in metrics)}
    n_judged_total = sum(1 for qid in task.query_ids if qid in task.qrels)
    out.update(n_queries=len(judged), n_excluded=n_judged_total - len(judged), n_corpus=len(task.corpus_ids),
               encode_s=round(encode_s, 2), search_s=round(search_s, 2),
               elapsed_s=round(time.perf_counter() - t0, 2))
    return out
