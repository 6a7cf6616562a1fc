"""SetCSE set operations over sentence embeddings (Liu, "SetCSE: Set Operations using Contrastive Learning of
Sentence Embeddings", ICLR 2024, arXiv 2404.17606).

A semantic is given as a *set* of example sentences. The similarity of a sentence ``x`` to a set ``S``
is the mean cosine similarity to its elements, ``Sim(x, S) = 1/|S| sum_{s in S} cos(x, s)``, which equals
``x_hat . e_S`` with the set embedding ``e_S`` = the mean of the unit-normalised element embeddings
(:func:`set_embedding`).

The operations are *not* symmetric in their operands (the paper stresses that they do not commute): the
first operand ``X`` is the collection that is searched (a corpus, e.g. earnings-call sentences in the
paper's Fig. 1 / Table 3) and the result is ``X``'s own elements, ordered by their similarity to the other
operands, which are example sets:

- intersection ``X ∩ S``: the elements of ``X`` most similar to ``S`` -- ``X`` sorted by ``Sim(x, S)``,
  descending;
- difference ``X \\ T``: the elements of ``X`` least similar to ``T`` -- ``X`` sorted by ``Sim(x, T)``,
  ascending (``T`` is only subtracted; there is no positive set in a difference);
- so ``X ∩ S`` lies in ``X`` and ``S ∩ X`` lies in ``S``: swapping the operands changes the result.

The paper writes longer queries (``X ∩ B ∩ D \\ E``, ``X \\ T1 \\ T2 \\ T3``, ``X ∩ S1 ∩ S2``) as *operation
series*: the operations run left to right and each one acts on the set the previous one returned
(:func:`series`; a size ``keep`` says how many elements each intermediate result holds), so their order
matters. :func:`intersection` / :func:`difference` with several example sets are one-step shortcuts of this
package that rank by the summed similarity ``sum_i Sim(x, S_i)``; with one set they are exactly the paper's
operations.

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
    """Ranking score of ``X ∩ S_1 (∩ S_2 ...)`` for each row of ``x`` (the elements of ``X``):
    ``sum_i Sim(x, S_i)``, higher is better (one set: ``Sim(x, S)``, the paper's intersection)."""
    if not sets:
        raise ValueError("intersection needs at least one example set")
    return np.sum([set_similarity(x, s) for s in sets], axis=0)


def difference_scores(x: Any, *sets: Any) -> np.ndarray:
    """Ranking score of ``X \\ T_1 (\\ T_2 ...)`` for each row of ``x`` (the elements of ``X``):
    ``-sum_j Sim(x, T_j)``, higher is better, i.e. least similar to the subtracted sets first."""
    if not sets:
        raise ValueError("difference needs a set to subtract")
    return -np.sum([set_similarity(x, t) for t in sets], axis=0)


def rank(scores: Any, k: int | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores (all when None), descending; ties by lower index."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order if k is None else order[:k]


def intersection(candidates: Any, *sets: Any, k: int | None = None) -> np.ndarray:
    """Indices of ``candidates`` (= ``X``) ranked for ``X ∩ S_1 ...``: most similar to the sets first."""
    return rank(intersection_scores(candidates, *sets), k)


def difference(candidates: Any, *sets: Any, k: int | None = None) -> np.ndarray:
    """Indices of ``candidates`` (= ``X``) ranked for ``X \\ T_1 ...``: least similar to the sets first."""
    return rank(difference_scores(candidates, *sets), k)


Op = Literal["and", "minus"]


def series(candidates: Any, steps: Sequence[tuple[Op, Any]], *, keep: int | Sequence[int]) -> np.ndarray:
    """An operation series ``X op_1 S_1 op_2 S_2 ...`` run left to right; returns indices into ``candidates``.

    ``candidates`` is ``X``. Step i orders the set left by step i-1 by its own operand only -- ``("and", S)``:
    ``Sim(x, S)`` descending, ``("minus", T)``: ``Sim(x, T)`` ascending -- and every step but the last keeps
    its best ``keep`` elements (an int for every step, or one size per intermediate step); the last step's
    full ordering of the surviving elements is returned. ``X ∩ B \\ C`` therefore differs from ``X \\ C ∩ B``.
    """
    if not steps:
        raise ValueError("a series needs at least one operation")
    sizes = [keep] * (len(steps) - 1) if isinstance(keep, (int, np.integer)) else list(keep)
    if len(sizes) != len(steps) - 1 or any(s < 1 for s in sizes):
        raise ValueError(f"keep must be >= 1, one size or one per intermediate step ({len(steps) - 1}), got {keep}")
    x = _unit(candidates)
    alive = np.arange(x.shape[0])
    for i, (op, s) in enumerate(steps):
        if op == "and":
            score = intersection_scores(x[alive], s)
        elif op == "minus":
            score = difference_scores(x[alive], s)
        else:
            raise ValueError(f"unknown set operation {op!r}; use 'and' (intersection) or 'minus' (difference)")
        alive = alive[rank(score, sizes[i] if i < len(sizes) else None)]
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
        """(candidate index, ``sum_i Sim(c, S_i)``) for ``candidates ∩ sets``, most similar first."""
        x = self.embed(candidates)
        scores = intersection_scores(x, *[self.embed(s) for s in sets])
        return [(int(i), float(scores[i])) for i in rank(scores, k)]

    def difference(self, candidates: Sequence[str], *sets: Sequence[str],
                   k: int | None = None) -> list[tuple[int, float]]:
        """(candidate index, ``sum_j Sim(c, T_j)``) for ``candidates \\ sets``, least similar first."""
        x = self.embed(candidates)
        scores = difference_scores(x, *[self.embed(t) for t in sets])
        return [(int(i), float(-scores[i])) for i in rank(scores, k)]

    def series(self, candidates: Sequence[str], steps: Sequence[tuple[Op, Sequence[str]]], *,
               keep: int | Sequence[int]) -> list[int]:
        """Indices of ``candidates`` for an operation series (see :func:`series`)."""
        return series(self.embed(candidates), [(op, self.embed(s)) for op, s in steps], keep=keep).tolist()
