"""Set-operation retrieval tasks from labelled sentences, evaluated with SetCSE operations.

SetCSE (Liu, ICLR 2024, arXiv 2404.17606) queries a collection ``X`` with example sets and reports the
accuracy and F1 of the retrieved sentences against the sentences that truly carry the queried semantic.
Here, for a query with ``R`` true answers in the pool, the top ``R`` of its ranking are selected; every pool
sentence is then a binary prediction (selected or not) and we report accuracy over the pool and F1 of the
selected class, both x 100 (with exactly ``R`` selected, F1 = precision = recall). The top-``R`` cut and
the construction below are this package's protocol for local data; the paper's own datasets (AG News,
Financial PhraseBank, Banking77, FMTOD) are not available offline.

Local labelled data have one label dimension per dataset, so a pool sentence with two semantics is
built by joining a sentence of dataset A (e.g. TREC question type) with one of dataset B (e.g. MR
sentiment): its labels are (a, b). Example sets (``n_examples`` per class; the paper's number of
example sentences) are other sentences of one class of A or B (never in the pool). For every class pair
(a, b), the pool ``X`` is queried with an operation series (the paper's serial operations):

- intersection ``X ∩ S_a ∩ S_b``: true answers are the pool items labelled (a, b);
- difference ``X ∩ S_a \\ S_b``: true answers are the pool items with label a and not label b.

The intermediate ``X ∩ S_a`` keeps as many items as the pool has with label a.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ops import series

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
    return task.labelled()


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


def _selection_metrics(selected: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """(accuracy over the pool, F1 of the selected class), x 100, for the indices ``selected``."""
    pred = np.zeros(len(relevant), dtype=bool)
    pred[selected] = True
    tp = int((pred & relevant).sum())
    denom = int(pred.sum()) + int(relevant.sum())
    return 100 * float((pred == relevant).mean()), (100 * 2 * tp / denom if denom else float("nan"))


def evaluate_set_task(encode: Callable[[list[str]], Any], task: SetOpTask) -> dict[str, Any]:
    """Accuracy and F1 (x 100) of SetCSE intersection and difference series, averaged over (class of A, class of B).

    Keys: ``intersection_acc``, ``intersection_f1``, ``difference_acc``, ``difference_f1``, ``n_pool`` and
    ``per_pair`` (``{"intersection": {"a&b": [acc, f1]}, "difference": {"a-b": [acc, f1]}}``).
    """
    pool = np.asarray(encode(task.pool), dtype=np.float64)
    emb_a = {c: np.asarray(encode(s), dtype=np.float64) for c, s in task.sets_a.items()}
    emb_b = {c: np.asarray(encode(s), dtype=np.float64) for c, s in task.sets_b.items()}
    per: dict[str, dict[str, list[float]]] = {"intersection": {}, "difference": {}}
    for ca, ea in emb_a.items():
        in_a = task.labels_a == ca
        if not in_a.any():
            continue
        for cb, eb in emb_b.items():
            for op, key, relevant in (("and", f"{ca}&{cb}", in_a & (task.labels_b == cb)),
                                      ("minus", f"{ca}-{cb}", in_a & (task.labels_b != cb))):
                r = int(relevant.sum())
                if not r:
                    continue
                ranked = series(pool, [("and", ea), (op, eb)], keep=int(in_a.sum()))
                per["intersection" if op == "and" else "difference"][key] = list(
                    _selection_metrics(ranked[:r], relevant))
    out: dict[str, Any] = {}
    for name, vals in per.items():
        arr = np.array(list(vals.values()), dtype=np.float64).reshape(-1, 2)
        out[f"{name}_acc"] = float(np.nanmean(arr[:, 0])) if len(arr) else float("nan")
        out[f"{name}_f1"] = float(np.nanmean(arr[:, 1])) if len(arr) else float("nan")
    return {**out, "n_pool": len(task.pool), "per_pair": per}
