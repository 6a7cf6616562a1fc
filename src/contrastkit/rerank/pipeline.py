"""Reranking as a step after retrieval: rank documents for a query, retrieve-then-rerank over a store,
and rerank candidate lists for evaluation.

The two-stage pipeline of Nogueira and Cho, "Passage Re-ranking with BERT", 2019: a bi-encoder
retrieves ``k`` candidates cheaply, a reranker (cross-encoder or LLM) rescores them jointly with
the query, and the best ``top_n`` are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

__all__ = ["RerankResult", "Reranker", "rerank", "rerank_candidates", "retrieve_then_rerank"]


class Reranker(Protocol):
    """Anything that scores (query, document) pairs: ``predict(pairs, batch_size=...) -> (n,) scores``."""

    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = ...) -> np.ndarray:
        """Relevance scores of the pairs, higher is more relevant."""
        ...


@dataclass(frozen=True)
class RerankResult:
    """One reranked document: its index in the input list, its score and (optionally) its text."""

    index: int
    relevance_score: float
    document: str | None = None


def _order(scores: np.ndarray) -> list[int]:
    """Indices by score descending, ties by lower index."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()


def rerank(reranker: Reranker, query: str, documents: Sequence[str], *, top_n: int | None = None,
           return_documents: bool = False, batch_size: int = 32) -> list[RerankResult]:
    """The ``top_n`` documents (all when None) by reranker score, best first (ties: input order)."""
    if top_n is not None and top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if not documents:
        return []
    scores = reranker.predict([(query, d) for d in documents], batch_size=batch_size)
    order = _order(scores)[:top_n]
    return [RerankResult(i, float(scores[i]), documents[i] if return_documents else None) for i in order]


def retrieve_then_rerank(store: Any, reranker: Reranker, queries: str | Sequence[str], *, k: int = 50,
                         top_n: int = 10, where: Mapping[str, Any] | None = None, batch_size: int = 32) -> Any:
    """Retrieve ``k`` hits per query from a :class:`~contrastkit.search.Store`, rerank them, keep ``top_n``.

    Returns ``Hit`` objects (as ``Store.search``) whose ``score`` is the reranker's; hits stored
    without text keep their retrieval order after the reranked ones. One query in, one list out.
    """
    single = isinstance(queries, str)
    qs = [queries] if single else list(queries)
    hits = store.search(qs, k=k, where=where)
    out = []
    for q, row in zip(qs, hits):
        texted = [h for h in row if h.text is not None]
        scores = reranker.predict([(q, h.text) for h in texted], batch_size=batch_size) if texted else []
        ranked = [replace(texted[i], score=float(scores[i])) for i in _order(np.asarray(scores))]
        out.append((ranked + [h for h in row if h.text is None])[:top_n])
    return out[0] if single else out


def rerank_candidates(reranker: Reranker, queries: Mapping[Any, str],
                      candidates: Mapping[Any, Sequence[tuple[Any, str]]], *, batch_size: int = 32,
                      show_progress: bool = False) -> dict[Any, list[Any]]:
    """Rerank each query's candidate list ``[(doc_id, text), ...]``; returns ``{query_id: [doc_id, ...]}``.

    All pairs go to the reranker at once (length-sorted batches across queries), for evaluation with
    :func:`contrastkit.evaluation.retrieval.score_rankings`.
    """
    qids = [q for q in queries if candidates.get(q)]
    pairs = [(queries[q], text) for q in qids for _, text in candidates[q]]
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if show_progress:
        kwargs["show_progress"] = True
    scores = reranker.predict(pairs, **kwargs) if pairs else np.zeros(0)
    out: dict[Any, list[Any]] = {}
    start = 0
    for q in qids:
        cands = candidates[q]
        s = np.asarray(scores[start:start + len(cands)])
        start += len(cands)
        out[q] = [cands[i][0] for i in _order(s)]
    return out
