"""Set-operation retrieval tasks from labelled sentences, evaluated as SetCSE evaluates its operations.

SetCSE (Liu, ICLR 2024) measures whether an operation over example sets retrieves, from a pool, the
sentences that carry the compound semantic: for an operation with ``R`` true answers in the pool, the
top ``R`` of its ranking are selected and scored (accuracy of the selection; with exactly ``R`` selected,
precision = recall = F1, reported here as R-precision x 100).

Local labelled data have one label dimension per dataset, so a pool sentence with two semantics is
built by joining a sentence of dataset A (e.g. TREC question type) with one of dataset B (e.g. MR
sentiment): its labels are (a, b). Example sets are other sentences of one class of A or B (never in
the pool). Then, for every class pair (a, b):

- intersection ``S_a ∩ S_b``: the true answers are the pool items labelled (a, b);
- difference ``S_a \\ S_b``: the true answers are the pool items with label a and not label b.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import difference_scores, intersection_scores, rank

__all__ = ["SetOpTask", "build_set_task", "evaluate_set_task", "labelled_sentences"]


@dataclass
class SetOpTask:
    """A pool of two-semantic sentences with their label pairs, and example sets per class of each dimension."""

    name: str
    pool: list[str]
    labels_a: np.ndarray
    labels_b: np.ndarray
    sets_a: dict[int, list[str]]
    sets_b: dict[int, list[str]]
    extra: dict[str, Any] = field(default_factory=dict)

    def example_sets(self) -> tuple[list[list[str]], list[list[int]]]:
        """All example sets (A's classes then B's) and the two groups that contrast each other."""
        sets = [*self.sets_a.values(), *self.sets_b.values()]
        na = len(self.sets_a)
        return sets, [list(range(na)), list(range(na, len(sets)))]


def labelled_sentences(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Every (sentence, label) of a SentEval classification task (TREC, MR, SUBJ, SST2, CR, MPQA), all splits."""
    from ..evaluation.transfer import load_transfer_task

    task = load_transfer_task(name, data_dir, needed_for=f"set-operation task over {name}")
    texts: list[str] = []
    labels: list[np.ndarray] = []
    for split in task.splits.values():
        texts += split.texts
        labels.append(split.labels)
    return texts, np.concatenate(labels)


def _split_class(idx: list[int], n_examples: int, rng: random.Random) -> tuple[list[int], list[int]]:
    idx = list(idx)
    rng.shuffle(idx)
    return idx[:n_examples], idx[n_examples:]


def build_set_task(name: str, texts_a: Sequence[str], labels_a: Sequence[int], texts_b: Sequence[str],
                   labels_b: Sequence[int], *, n_examples: int = 20, pool_per_pair: int = 30,
                   seed: int = 0) -> SetOpTask:
    """Build a :class:`SetOpTask`: ``n_examples`` example sentences per class, ``pool_per_pair`` pool items per
    (class of A, class of B), each the join of one held-out sentence of A and one of B."""
    rng = random.Random(seed)
    la, lb = np.asarray(labels_a), np.asarray(labels_b)
    sets_a: dict[int, list[str]] = {}
    sets_b: dict[int, list[str]] = {}
    rest_a: dict[int, list[int]] = {}
    rest_b: dict[int, list[int]] = {}
    for labels, texts, sets, rest in ((la, texts_a, sets_a, rest_a), (lb, texts_b, sets_b, rest_b)):
        for c in sorted(set(labels.tolist())):
            ex, left = _split_class(np.flatnonzero(labels == c).tolist(), n_examples, rng)
            if len(ex) < 2 or not left:
                raise ValueError(f"{name}: class {c} has too few sentences for {n_examples} examples and a pool")
            sets[int(c)] = [texts[i] for i in ex]
            rest[int(c)] = left
    pool: list[str] = []
    pa: list[int] = []
    pb: list[int] = []
    for ca, ia in rest_a.items():
        for cb, ib in rest_b.items():
            for i, j in zip(rng.sample(ia, min(pool_per_pair, len(ia))), rng.sample(ib, min(pool_per_pair, len(ib)))):
                pool.append(f"{texts_a[i]} {texts_b[j]}")
                pa.append(ca)
                pb.append(cb)
    return SetOpTask(name, pool, np.asarray(pa), np.asarray(pb), sets_a, sets_b,
                     {"n_examples": n_examples, "pool_per_pair": pool_per_pair, "seed": seed})


def _r_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    r = int(relevant.sum())
    return float(relevant[rank(scores, r)].mean()) if r else float("nan")


def evaluate_set_task(encode: Callable[[list[str]], Any], task: SetOpTask) -> dict[str, Any]:
    """R-precision x 100 of SetCSE intersection and difference, averaged over every (class of A, class of B)."""
    pool = np.asarray(encode(task.pool), dtype=np.float64)
    emb_a = {c: np.asarray(encode(s), dtype=np.float64) for c, s in task.sets_a.items()}
    emb_b = {c: np.asarray(encode(s), dtype=np.float64) for c, s in task.sets_b.items()}
    inter: dict[str, float] = {}
    diff: dict[str, float] = {}
    for ca, ea in emb_a.items():
        for cb, eb in emb_b.items():
            key = f"{ca}&{cb}"
            inter[key] = 100 * _r_precision(intersection_scores(pool, ea, eb),
                                            (task.labels_a == ca) & (task.labels_b == cb))
            diff[f"{ca}-{cb}"] = 100 * _r_precision(difference_scores(pool, ea, eb),
                                                    (task.labels_a == ca) & (task.labels_b != cb))
    return {"intersection": float(np.nanmean(list(inter.values()))),
            "difference": float(np.nanmean(list(diff.values()))),
            "n_pool": len(task.pool), "per_pair": {"intersection": inter, "difference": diff}}
