"""Semantic routing: routes defined by example utterances, a query sent to the most similar route, or to no route
when the best similarity is below a threshold calibrated on held-out examples.

The pattern of the ``semantic-router`` library (Aurelio AI) and of intent detection by nearest neighbours: a
route's score is the cosine similarity of the query to the route's centroid (mean of its normalised utterance
embeddings, renormalised), or with ``mode='knn'`` the mean of the query's ``k`` highest similarities to that
route's utterances. The threshold maximises held-out accuracy where "no route" (None) is a class of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["SemanticRouter", "calibrate_threshold", "route_scores"]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def route_scores(query_embs: Any, utterance_embs: Any, utterance_routes: Sequence[int], n_routes: int, *,
                 mode: str = "centroid", k: int = 3) -> np.ndarray:
    """``(n_queries, n_routes)`` scores: cosine to each route's centroid, or (``mode='knn'``) the mean of the
    ``k`` highest cosines to the route's utterances (fewer when the route has fewer)."""
    q, u = _np(query_embs), _np(utterance_embs)
    routes = np.asarray(utterance_routes)
    if len(routes) != len(u):
        raise ConfigError(f"{len(routes)} route ids for {len(u)} utterance embeddings")
    if mode not in ("centroid", "knn"):
        raise ConfigError(f"mode must be 'centroid' or 'knn', got {mode!r}")
    out = np.full((len(q), n_routes), -np.inf)
    for r in range(n_routes):
        members = u[routes == r]
        if not len(members):
            continue
        if mode == "centroid":
            out[:, r] = q @ _np(members.mean(axis=0))
        else:
            sims = np.sort(q @ members.T, axis=1)[:, ::-1][:, :max(1, k)]
            out[:, r] = sims.mean(axis=1)
    return out


def calibrate_threshold(best_scores: Sequence[float], best_routes: Sequence[Any],
                        targets: Sequence[Any]) -> tuple[float, float]:
    """The threshold (route iff best score >= it) with the highest accuracy, counting None targets as the "no route"
    class, and that accuracy. Candidates are -inf, the midpoints between consecutive distinct scores and +inf;
    ties go to the lowest threshold."""
    s = np.asarray(best_scores, dtype=np.float64)
    if not (len(s) == len(best_routes) == len(targets)) or not len(s):
        raise ConfigError("calibration needs as many best scores, best routes and targets (at least one)")
    hit = np.array([b == t for b, t in zip(best_routes, targets)])  # right when routed
    none = np.array([t is None for t in targets])  # right when not routed
    u = np.unique(s)
    candidates = np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2.0, [np.inf]])
    acc = np.array([np.mean(np.where(s >= t, hit, none)) for t in candidates])
    best = int(np.argmax(acc))
    return float(candidates[best]), float(acc[best])


class SemanticRouter:
    """Routes defined by example utterances, scored by centroid or kNN cosine, with an optional threshold."""

    def __init__(self, encode: Callable[[list[str]], Any] | Any, routes: Mapping[str, Sequence[str]], *,
                 mode: str = "centroid", k: int = 3, threshold: float | None = None) -> None:
        """``encode``: texts -> embeddings (or anything with ``.encode``, e.g. a contrastkit ``Encoder``);
        ``routes``: route name -> example utterances; ``threshold``: None routes every query."""
        if not routes or any(not list(v) for v in routes.values()):
            raise ConfigError("every route needs at least one example utterance")
        self.encode_fn: Callable[[list[str]], Any] = encode.encode if hasattr(encode, "encode") else encode
        self.names = list(routes)
        self.mode, self.k, self.threshold = mode, k, threshold
        texts = [t for name in self.names for t in routes[name]]
        self.utterance_routes = [i for i, name in enumerate(self.names) for _ in routes[name]]
        self.utterance_embs = _np(self.encode_fn(texts))
        route_scores(self.utterance_embs[:1], self.utterance_embs, self.utterance_routes, len(self.names),
                     mode=mode, k=k)  # validates mode early

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), n_routes)`` route scores (columns in ``self.names`` order)."""
        return route_scores(self.encode_fn(list(texts)), self.utterance_embs, self.utterance_routes,
                            len(self.names), mode=self.mode, k=self.k)

    def _best(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        sc = self.scores(texts)
        idx = sc.argmax(axis=1)
        return sc[np.arange(len(idx)), idx], [self.names[i] for i in idx]

    def route(self, texts: Sequence[str]) -> list[str | None]:
        """Each text's route name, or None when its best score is below the threshold."""
        best, names = self._best(texts)
        t = -np.inf if self.threshold is None else self.threshold
        return [n if s >= t else None for s, n in zip(best, names)]

    def calibrate(self, texts: Sequence[str], targets: Sequence[str | None]) -> float:
        """Set the threshold that maximises accuracy on held-out ``texts`` (None target: no route); returns that
        accuracy."""
        unknown = {t for t in targets if t is not None and t not in self.names}
        if unknown:
            raise ConfigError(f"calibration targets name unknown routes: {sorted(unknown)}")
        best, names = self._best(texts)
        self.threshold, acc = calibrate_threshold(best, names, targets)
        return acc
