"""Paraphrase retrieval: find each query's paraphrase in a corpus by exact cosine search.

Each query has one or more relevant corpus entries (``relevant_index``: an int, or a
collection of ints when the corpus holds duplicates). The corpus is ranked by cosine
similarity to the query (exact search, chunked over queries); ties are broken in favour
of the lower corpus index, so results are deterministic. Metrics (x 100):

* ``recall@k``: share of queries with a relevant entry among the top k;
* ``mrr@10``: mean reciprocal rank of the first relevant entry, 0 when it is below rank 10;
* ``mean_rank`` is not reported (it is dominated by a few outliers); ``median_rank`` is.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import torch

from contrastkit.evaluation.retrieval import EncodeFn
from contrastkit.evaluation.retrieval import normalize_embeddings as _as_tensor

__all__ = ["EncodeFn", "evaluate_paraphrase_retrieval", "first_relevant_ranks", "retrieval_metrics"]


def _relevant_sets(relevant_index: Sequence[int | Collection[int]], n_corpus: int) -> list[list[int]]:
    out = []
    for i, r in enumerate(relevant_index):
        ids = [int(r)] if isinstance(r, (int, np.integer)) else sorted({int(x) for x in r})
        if not ids or any(j < 0 or j >= n_corpus for j in ids):
            raise ValueError(f"query {i}: relevant index {r!r} outside the corpus (size {n_corpus})")
        out.append(ids)
    return out


def first_relevant_ranks(query_emb: Any, corpus_emb: Any, relevant_index: Sequence[int | Collection[int]],
                         *, chunk_size: int = 1024) -> np.ndarray:
    """1-based rank of each query's best-ranked relevant corpus entry under cosine similarity."""
    q = _as_tensor(query_emb)
    c = _as_tensor(corpus_emb)
    if q.shape[0] != len(relevant_index):
        raise ValueError(f"{q.shape[0]} query embeddings but {len(relevant_index)} relevant indices")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != corpus dim {c.shape[1]}")
    rel = _relevant_sets(relevant_index, c.shape[0])
    ranks = np.empty(len(rel), dtype=np.int64)
    idx = torch.arange(c.shape[0])
    for start in range(0, q.shape[0], chunk_size):
        sims = q[start:start + chunk_size] @ c.T  # (b, n)
        for row in range(sims.shape[0]):
            s = sims[row]
            ids = torch.tensor(rel[start + row])
            best = s[ids].max()
            best_id = ids[s[ids] == best].min()
            # entries ranked above the best relevant one: higher score, or equal score and lower index
            above = (s > best) | ((s == best) & (idx < best_id))
            ranks[start + row] = int(above.sum()) + 1
    return ranks


def retrieval_metrics(ranks: Sequence[int] | np.ndarray, ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Recall@k, MRR@10 and median rank (x 100 except the rank) from 1-based first-relevant ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no queries")
    out = {f"recall@{k}": float((r <= k).mean() * 100.0) for k in ks}
    out["mrr@10"] = float(np.where(r <= 10, 1.0 / r, 0.0).mean() * 100.0)
    out["median_rank"] = float(np.median(r))
    return out


def evaluate_paraphrase_retrieval(encode_fn: EncodeFn, queries: Sequence[str], corpus: Sequence[str],
                                  relevant_index: Sequence[int | Collection[int]], *,
                                  ks: Sequence[int] = (1, 10), chunk_size: int = 1024,
                                  return_ranks: bool = False) -> dict[str, Any]:
    """Encode queries and corpus, rank the corpus by cosine per query, return Recall@k, MRR@10 and timings.

    With ``return_ranks`` the result also holds ``ranks``: each query's 1-based first-relevant rank.
    """
    if len(queries) != len(relevant_index):
        raise ValueError(f"{len(queries)} queries but {len(relevant_index)} relevant indices")
    t0 = time.perf_counter()
    q = encode_fn(list(queries))
    c = encode_fn(list(corpus))
    encode_s = time.perf_counter() - t0
    ranks = first_relevant_ranks(q, c, relevant_index, chunk_size=chunk_size)
    out: dict[str, Any] = retrieval_metrics(ranks, ks)
    out.update(n_queries=len(queries), n_corpus=len(corpus), encode_s=round(encode_s, 2),
               elapsed_s=round(time.perf_counter() - t0, 2))
    if return_ranks:
        out["ranks"] = ranks.tolist()
    return out
