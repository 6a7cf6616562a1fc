"""Demonstration selectors for in-context learning: pure functions over a query embedding and a pool's embeddings.

Every selector has the shape ``select(query_emb, pool_embs, k, **params) -> list[int]`` and returns pool indices
in *selection order* (the most important first; the harness decides where each lands in the prompt). Similarities
are cosine similarities (embeddings are L2-normalised here, so callers may pass raw vectors).

* ``random``: k pool items drawn uniformly without replacement (the baseline of every paper below).
* ``knn``: the k nearest neighbours of the query: KATE (Liu et al., 2022, "What Makes Good In-Context Examples
  for GPT-3?", DeeLIO).
* ``mmr``: maximal marginal relevance (Carbonell & Goldstein, 1998, SIGIR), relevance traded against redundancy
  with the examples already chosen.
* ``dpp``: CEIL's determinantal objective (Ye et al., 2023, "Compositional Exemplars for In-context Learning",
  ICML): maximise ``log det L_S`` with ``L = diag(r) S diag(r)``, ``S`` the example-example cosine kernel and
  ``r_i = exp(sim(q, i) / (2 * trade_off))`` the query relevance, so ``log det L_S = sum_i sim(q, i) / trade_off +
  log det S_S``; solved by the fast greedy MAP inference of Chen, Zhang & Zhou (2018, NeurIPS) over the
  ``n_candidates`` nearest neighbours, as CEIL does at inference.
* ``sequential``: Se^2's idea (Liu et al., 2024, "Se^2: Sequential Example Selection for In-Context Learning",
  ACL Findings): examples are chosen one after another, each candidate scored by the LM *given the examples
  already chosen*; beam search (``beam=1``: greedy) over the ``n_candidates`` nearest neighbours. The scorer is
  a callable (the harness builds it from an LM); Se^2 trains a retriever on such scores, here they are used
  directly at selection time.
* ``label_coverage``: kNN that first covers up to k distinct labels (the nearest example of each of the labels
  nearest the query), then fills up with the nearest remaining examples: for many-label tasks, where plain kNN
  shows few labels (Milios et al., 2023, "In-Context Learning for Text Classification with Many Labels",
  GenBench).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError

__all__ = ["SELECTORS", "Selector", "cosine_to_query", "dpp_log_det", "greedy_dpp_map", "select_dpp", "select_knn",
           "select_label_coverage", "select_mmr", "select_random", "select_sequential"]

ArrayLike = Any  # numpy array, torch tensor or nested sequence


class Selector(Protocol):
    """A demonstration selector: pool indices for one query, most important first."""

    def __call__(self, query_emb: ArrayLike, pool_embs: ArrayLike, k: int, **params: Any) -> list[int]: ...


def _as_np(x: ArrayLike) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _check(query_emb: ArrayLike, pool_embs: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
    q, p = _as_np(query_emb), _as_np(pool_embs)
    if q.ndim != 1 or p.ndim != 2 or p.shape[1] != q.shape[0]:
        raise ConfigError(f"expected a (d,) query and an (n, d) pool, got {q.shape} and {p.shape}")
    if k < 0:
        raise ConfigError(f"k must be >= 0, got {k}")
    return _normalize(q), _normalize(p)


def cosine_to_query(query_emb: ArrayLike, pool_embs: ArrayLike) -> np.ndarray:
    """Cosine similarity of each pool embedding to the query, shape (n,)."""
    q, p = _check(query_emb, pool_embs, 0)
    return p @ q


def _top(sims: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the n highest similarities, highest first; ties broken by lower index (stable)."""
    order = np.argsort(-sims, kind="stable")
    return order if n is None else order[:n]


def select_random(query_emb: ArrayLike, pool_embs: ArrayLike, k: int, *,
                  rng: np.random.Generator | int | None = None) -> list[int]:
    """k distinct pool indices drawn uniformly (the query is ignored); ``rng`` a Generator or a seed."""
    _, p = _check(query_emb, pool_embs, k)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return [int(i) for i in gen.choice(len(p), size=min(k, len(p)), replace=False)]


def select_knn(query_emb: ArrayLike, pool_embs: ArrayLike, k: int) -> list[int]:
    """The k pool items most similar to the query, most similar first (KATE)."""
    q, p = _check(query_emb, pool_embs, k)
    return [int(i) for i in _top(p @ q, k)]


def select_mmr(query_emb: ArrayLike, pool_embs: ArrayLike, k: int, *, lam: float = 0.5,
               n_candidates: int | None = None) -> list[int]:
    """Maximal marginal relevance: repeatedly take argmax ``lam * sim(q, i) - (1 - lam) * max_{j chosen} sim(i, j)``.

    ``lam=1`` is kNN; smaller values favour diversity. ``n_candidates`` restricts the search to that many nearest
    neighbours (None: the whole pool). Ties go to the lower pool index.
    """
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"mmr lam must be in [0, 1], got {lam}")
    q, p = _check(query_emb, pool_embs, k)
    cand = _top(p @ q, n_candidates)
    rel = p[cand] @ q
    sim = p[cand] @ p[cand].T
    chosen: list[int] = []
    redundancy = np.full(len(cand), -np.inf)
    for _ in range(min(k, len(cand))):
        score = lam * rel - (1.0 - lam) * np.where(np.isfinite(redundancy), redundancy, 0.0)
        score[chosen] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        redundancy = np.maximum(redundancy, sim[best])
    return [int(cand[i]) for i in chosen]


def greedy_dpp_map(kernel: np.ndarray, k: int, *, eps: float = 1e-10) -> list[int]:
    """Greedy MAP inference of a DPP (Chen, Zhang & Zhou, 2018): items in the order greedy adds them.

    Each step adds the item with the largest gain in ``log det kernel[S, S]`` (an incremental Cholesky
    factorisation, O(n k^2)); it stops early once no item adds more than ``eps`` to the determinant's factor
    (the rest would be linearly dependent on the chosen set).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    n = kernel.shape[0]
    k = min(k, n)
    cis = np.zeros((k, n))
    d2 = np.diag(kernel).copy()
    chosen: list[int] = []
    if k == 0:
        return chosen
    j = int(np.argmax(d2))
    if d2[j] <= eps:
        return chosen
    while True:
        chosen.append(j)
        if len(chosen) == k:
            return chosen
        i = len(chosen) - 1
        e = (kernel[j] - cis[:i, j] @ cis[:i]) / np.sqrt(d2[j])
        cis[i] = e
        d2 = d2 - e**2
        d2[chosen] = -np.inf
        j = int(np.argmax(d2))
        if d2[j] <= eps:
            return chosen


def dpp_log_det(kernel: np.ndarray, subset: Sequence[int]) -> float:
    """``log det kernel[subset, subset]`` (-inf for a singular submatrix); CEIL's subset score."""
    idx = list(subset)
    sign, logdet = np.linalg.slogdet(np.asarray(kernel, dtype=np.float64)[np.ix_(idx, idx)])
    return float(logdet) if sign > 0 else float("-inf")


def select_dpp(query_emb: ArrayLike, pool_embs: ArrayLike, k: int, *, trade_off: float = 0.1,
               n_candidates: int | None = 100) -> list[int]:
    """CEIL's DPP subset: greedy MAP of ``L = diag(r) S diag(r)``, ``r_i = exp(sim(q, i) / (2 * trade_off))``.

    ``S`` is the cosine kernel of the candidates (the ``n_candidates`` nearest neighbours, None: all). A small
    ``trade_off`` weighs relevance more (the limit is kNN); a large one weighs diversity. When the kernel's rank
    runs out before k items, the nearest remaining candidates fill the set.
    """
    if trade_off <= 0:
        raise ConfigError(f"dpp trade_off must be > 0, got {trade_off}")
    q, p = _check(query_emb, pool_embs, k)
    cand = _top(p @ q, n_candidates)
    rel_sim = p[cand] @ q
    # Subtract the max before exponentiating: a common factor scales det(L_S) by a constant, the argmax is unchanged.
    r = np.exp((rel_sim - rel_sim.max()) / (2.0 * trade_off))
    kernel = r[:, None] * (p[cand] @ p[cand].T) * r[None, :]
    chosen = greedy_dpp_map(kernel, k)
    rest = [i for i in range(len(cand)) if i not in set(chosen)]
    chosen += rest[:max(0, min(k, len(cand)) - len(chosen))]
    return [int(cand[i]) for i in chosen]


def select_label_coverage(query_emb: ArrayLike, pool_embs: ArrayLike, k: int, *, labels: Sequence[Any],
                          n_candidates: int | None = None) -> list[int]:
    """kNN that covers up to k distinct labels first: the nearest example of each new label (in order of
    similarity) until k labels or all labels are covered, then the nearest remaining examples; returned most
    similar first."""
    q, p = _check(query_emb, pool_embs, k)
    if len(labels) != len(p):
        raise ConfigError(f"label_coverage needs one label per pool item: {len(labels)} labels, {len(p)} items")
    order = _top(p @ q, n_candidates)
    chosen: list[int] = []
    seen: set[Any] = set()
    for i in order:
        if len(chosen) == k:
            break
        if labels[i] not in seen:
            seen.add(labels[i])
            chosen.append(int(i))
    taken = set(chosen)
    chosen += [int(i) for i in order if int(i) not in taken][:k - len(chosen)]
    rank = {int(i): r for r, i in enumerate(order)}
    return sorted(chosen, key=rank.__getitem__)


def select_sequential(query_emb: ArrayLike, pool_embs: ArrayLike, k: int, *,
                      score: Callable[[list[int]], float] | None = None,
                      score_many: Callable[[list[list[int]]], Sequence[float]] | None = None,
                      n_candidates: int = 10, beam: int = 1) -> list[int]:
    """Se^2-style sequential selection: grow sequences one example at a time, scoring each extension
    ``score(chosen + [candidate])`` (higher is better; the harness scores with the LM), keeping the ``beam`` best
    sequences (1: greedy); candidates are the ``n_candidates`` nearest neighbours. ``score_many`` (one call per
    step, all extensions at once: lets an LM batch them) may replace ``score``. Returns the best sequence in the
    order it was built."""
    if beam < 1 or n_candidates < 1:
        raise ConfigError(f"sequential needs beam >= 1 and n_candidates >= 1, got {beam} and {n_candidates}")
    if (score is None) == (score_many is None):
        raise ConfigError("sequential needs exactly one of score and score_many")
    q, p = _check(query_emb, pool_embs, k)
    cand = [int(i) for i in _top(p @ q, n_candidates)]
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    for _ in range(min(k, len(cand))):
        seqs = [seq + [c] for _, seq in beams for c in cand if c not in seq]
        values = [score(s) for s in seqs] if score is not None else list(score_many(seqs))  # type: ignore[misc]
        grown = [(float(v), s) for v, s in zip(values, seqs)]
        grown.sort(key=lambda t: -t[0])  # stable: ties keep the candidate (similarity) order
        beams = grown[:beam]
    return beams[0][1]


SELECTORS: dict[str, Selector] = {
    "random": select_random,
    "knn": select_knn,
    "mmr": select_mmr,
    "dpp": select_dpp,
    "sequential": select_sequential,
    "label_coverage": select_label_coverage,
}
"""Selector of each name."""
