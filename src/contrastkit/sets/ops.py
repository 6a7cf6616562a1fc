"""SetCSE set operations over sentence embeddings (Liu, "SetCSE: Set Operations using Contrastive Learning of
Sentence Embeddings", ICLR 2024).

A semantic is given as a *set* of example sentences. The similarity of a sentence ``x`` to a set ``S``
is the mean cosine similarity to its elements, ``Sim(x, S) = 1/|S| sum_{s in S} cos(x, s)``, which equals
``x_hat . e_S`` with the set embedding ``e_S`` = the mean of the unit-normalised element embeddings
(:func:`set_embedding`). On a pool of candidate sentences ``C``:

- intersection ``S_1 ∩ ... ∩ S_m``: ``C`` sorted by ``sum_i Sim(c, S_i)``, descending;
- difference ``A \\ B_1 \\ ... \\ B_n``: ``C`` sorted by ``Sim(c, A) - sum_j Sim(c, B_j)``, descending;
- an operation series (e.g. ``(A ∩ B) \\ C``) applies its operations left to right, each one ranking the
  candidates the previous one kept (:func:`series`), so the order of operations matters.

Ties are broken by candidate order (lower index first). Everything here is numpy on precomputed
embeddings; :class:`SetCSE` runs the same operations on texts with an encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["SetCSE", "difference", "difference_scores", "intersection", "intersection_scores", "rank",
           "series", "set_embedding", "set_similarity"]


def _unit(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, d) embedding matrix, got shape {a.shape}")
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def set_embedding(members: Any) -> np.ndarray:
    """The set's embedding: the mean of its members' unit-normalised embeddings, shape (d,)."""
    return _unit(members).mean(axis=0)


def set_similarity(x: Any, members: Any) -> np.ndarray:
    """``Sim(x, S)``: mean cosine similarity of each row of ``x`` to the members of ``S``, shape (n,)."""
    e = set_embedding(members)
    xs = _unit(x)
    if xs.shape[1] != e.shape[0]:
        raise ValueError(f"sentence dim {xs.shape[1]} != set dim {e.shape[0]}")
    return xs @ e


def intersection_scores(x: Any, *sets: Any) -> np.ndarray:
    """``sum_i Sim(x, S_i)`` for each row of ``x`` (SetCSE intersection)."""
    if not sets:
        raise ValueError("intersection needs at least one set")
    return np.sum([set_similarity(x, s) for s in sets], axis=0)


def difference_scores(x: Any, a: Any, *bs: Any) -> np.ndarray:
    """``Sim(x, A) - sum_j Sim(x, B_j)`` for each row of ``x`` (SetCSE difference ``A \\ B_1 \\ ...``)."""
    if not bs:
        raise ValueError("difference needs a set to subtract")
    return set_similarity(x, a) - np.sum([set_similarity(x, b) for b in bs], axis=0)


def rank(scores: Any, k: int | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores (all when None), descending; ties by lower index."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if k is None else order[:k]


def intersection(candidates: Any, *sets: Any, k: int | None = None) -> np.ndarray:
    """Candidate indices ranked for ``S_1 ∩ S_2 ∩ ...`` (best first, ``k`` of them)."""
    return rank(intersection_scores(candidates, *sets), k)


def difference(candidates: Any, a: Any, *bs: Any, k: int | None = None) -> np.ndarray:
    """Candidate indices ranked for ``A \\ B_1 \\ ...`` (best first, ``k`` of them)."""
    return rank(difference_scores(candidates, a, *bs), k)


Op = Literal["and", "minus"]


def series(candidates: Any, first: Any, steps: Sequence[tuple[Op, Any]], *, keep: int) -> np.ndarray:
    """An operation series ``first op_1 S_1 op_2 S_2 ...`` applied left to right; returns the ranked indices.

    Step i ranks the candidates kept by step i-1 (all candidates for the first step) by its binary
    operation -- ``("and", S)``: ``Sim(c, prev) + Sim(c, S)``, ``("minus", S)``: ``Sim(c, prev) - Sim(c, S)``
    where ``prev`` is the running score -- and keeps the best ``keep``; the last step's ranking is returned.
    """
    if not steps:
        raise ValueError("a series needs at least one operation")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    x = _unit(candidates)
    alive = np.arange(x.shape[0])
    score = set_similarity(x, first)
    for i, (op, s) in enumerate(steps):
        if op not in ("and", "minus"):
            raise ValueError(f"unknown set operation {op!r}; use 'and' (intersection) or 'minus' (difference)")
        sim = set_similarity(x[alive], s)
        score = score[alive] + sim if op == "and" else score[alive] - sim
        order = rank(score, keep if i < len(steps) - 1 else None)
        alive, score = alive[order], score[order]
        score_full = np.full(x.shape[0], -np.inf)
        score_full[alive] = score
        score = score_full
    return alive


class SetCSE:
    """SetCSE operations on texts: an encoder (contrastkit Encoder or ``texts -> (n, d)``) plus the numpy ops."""

    def __init__(self, encoder: Any, *, batch_size: int = 64) -> None:
        self.encode = encoder if callable(encoder) and not hasattr(encoder, "encode") else (
            lambda texts: encoder.encode(texts, batch_size=batch_size))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` as a float array."""
        return np.asarray(self.encode(list(texts)), dtype=np.float64)

    def similarity(self, texts: Sequence[str], members: Sequence[str]) -> np.ndarray:
        """``Sim(text, S)`` for each text (mean cosine to the set's members)."""
        return set_similarity(self.embed(texts), self.embed(members))

    def intersection(self, candidates: Sequence[str], *sets: Sequence[str],
                     k: int | None = None) -> list[tuple[int, float]]:
        """(candidate index, score) ranked for the intersection of ``sets``."""
        x = self.embed(candidates)
        scores = intersection_scores(x, *[self.embed(s) for s in sets])
        return [(int(i), float(scores[i])) for i in rank(scores, k)]

    def difference(self, candidates: Sequence[str], a: Sequence[str], *bs: Sequence[str],
                   k: int | None = None) -> list[tuple[int, float]]:
        """(candidate index, score) ranked for ``a \\ b_1 \\ ...``."""
        x = self.embed(candidates)
        scores = difference_scores(x, self.embed(a), *[self.embed(b) for b in bs])
        return [(int(i), float(scores[i])) for i in rank(scores, k)]
