"""ICL evaluation tasks: a demonstration pool and held-out test queries that never overlap.

Classification (from SentEval's files, :func:`contrastkit.evaluation.transfer.load_transfer_task`):

* SST2: pool = the train split, queries = the test split.
* TREC (6 coarse labels): pool = ``train_5500.label``, queries = ``TREC_10.label``.
* MR, SUBJ: one file pair each; a fixed shuffle (``split_seed``) holds out ``test_fraction`` as queries.

Any pool sentence identical to a query is dropped from the pool (counted in ``notes``), so no query is ever its
own demonstration. Label words follow the usual ICL verbalizers (SST2/MR: negative/positive; SUBJ:
subjective/objective; TREC: abbreviation, description, entity, human, location, number).

Generation: KJV -> WEB verse rewriting (a low-resource "translation" analog available offline, after
"In-Context Example Selection via Similarity Search Improves Low-Resource Machine Translation", Zebaze et al.,
2024): demonstrations from the training books of :mod:`contrastkit.data.embedded`, queries from the held-out
books only, scored with chrF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

__all__ = ["CLASSIFICATION_TASKS", "ICL_TASKS", "ClassificationTask", "RewriteTask", "load_bible_rewrite_task",
           "load_classification_task"]

CLASSIFICATION_TASKS: tuple[str, ...] = ("SST2", "TREC", "SUBJ", "MR")
"""Classification tasks :func:`load_classification_task` knows."""

ICL_TASKS: tuple[str, ...] = (*CLASSIFICATION_TASKS, "KJV-WEB")
"""Every ICL task (KJV-WEB: verse rewriting, chrF)."""

# name -> (template with {text} and {label}, label words in label-id order)
_FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "SST2": ("Review: {text}\nSentiment: {label}", ("negative", "positive")),
    "MR": ("Review: {text}\nSentiment: {label}", ("negative", "positive")),
    "SUBJ": ("Input: {text}\nType: {label}", ("subjective", "objective")),  # SentEval: 1 = objective
    "TREC": ("Question: {text}\nAnswer type: {label}",
             ("abbreviation", "description", "entity", "human", "location", "number")),
}


@dataclass
class ClassificationTask:
    """A labelled demonstration pool, held-out queries, a prompt template and one label word per label id."""

    name: str
    template: str
    label_words: tuple[str, ...]
    pool_texts: list[str]
    pool_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    notes: list[str] = field(default_factory=list)

    def limit(self, n_test: int | None = None, n_pool: int | None = None, seed: int = 0) -> ClassificationTask:
        """A copy with at most ``n_test`` queries and ``n_pool`` pool items, drawn by ``seed`` (None: all)."""
        rng = np.random.default_rng(seed)

        def pick(n: int | None, size: int) -> np.ndarray:
            return np.arange(size) if n is None or n >= size else np.sort(rng.choice(size, n, replace=False))

        ti, pi = pick(n_test, len(self.test_texts)), pick(n_pool, len(self.pool_texts))
        notes = [*self.notes, *([f"{len(ti)} of {len(self.test_texts)} queries"] if len(ti) < len(self.test_texts)
                                else []),
                 *([f"{len(pi)} of {len(self.pool_texts)} pool items"] if len(pi) < len(self.pool_texts) else [])]
        return ClassificationTask(self.name, self.template, self.label_words, [self.pool_texts[i] for i in pi],
                                  self.pool_labels[pi], [self.test_texts[i] for i in ti], self.test_labels[ti], notes)


@dataclass
class RewriteTask:
    """Source -> target rewriting: a pool of (source, target) demonstrations and held-out test pairs."""

    name: str
    template: str
    pool_sources: list[str]
    pool_targets: list[str]
    test_sources: list[str]
    test_targets: list[str]
    notes: list[str] = field(default_factory=list)


def _drop_overlap(pool_texts: list[str], pool_labels: np.ndarray, test_texts: list[str],
                  notes: list[str]) -> tuple[list[str], np.ndarray]:
    test = set(test_texts)
    keep = [i for i, t in enumerate(pool_texts) if t not in test]
    if len(keep) < len(pool_texts):
        notes.append(f"dropped {len(pool_texts) - len(keep)} pool sentences identical to a query")
    return [pool_texts[i] for i in keep], pool_labels[keep]


def load_classification_task(name: str, data_dir: str | os.PathLike[str] | None = None, *,
                             test_fraction: float = 0.2, split_seed: int = 0) -> ClassificationTask:
    """SST2, TREC, SUBJ or MR from SentEval's files as a pool/query split (see the module docstring)."""
    from ..evaluation.transfer import load_transfer_task

    if name not in _FORMATS:
        raise ConfigError(f"unknown ICL classification task '{name}'; choose one of {', '.join(CLASSIFICATION_TASKS)}")
    template, words = _FORMATS[name]
    task = load_transfer_task(name, data_dir)
    notes = [f"source: {task.source}"]
    if name in ("SST2", "TREC"):
        pool, test = task.splits["train"], task.splits["test"]
        pool_texts, pool_labels, test_texts, test_labels = pool.texts, pool.labels, test.texts, test.labels
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        split = task.splits["all"]
        order = np.random.default_rng(split_seed).permutation(len(split))
        n_test = max(1, int(round(test_fraction * len(split))))
        te, po = order[:n_test], order[n_test:]
        test_texts, test_labels = [split.texts[i] for i in te], split.labels[te]
        pool_texts, pool_labels = [split.texts[i] for i in po], split.labels[po]
        notes.append(f"held out {n_test} of {len(split)} sentences as queries (split_seed={split_seed})")
    pool_texts, pool_labels = _drop_overlap(list(pool_texts), np.asarray(pool_labels), list(test_texts), notes)
    return ClassificationTask(name, template, words, pool_texts, pool_labels, list(test_texts),
                              np.asarray(test_labels), notes)


def load_bible_rewrite_task(*, n_pool: int | None = 2000, n_test: int | None = 200, seed: int = 0) -> RewriteTask:
    """KJV -> WEB: ``n_pool`` demonstrations drawn from the training books, ``n_test`` queries from the held-out
    books (:data:`contrastkit.data.embedded.HELDOUT_BOOKS`); None keeps all of them. Needs ``diatheke``."""
    from ..data.embedded import HELDOUT_BOOKS, bible_verses

    verses = bible_verses()
    held = set(HELDOUT_BOOKS)
    pool = [v for v in verses if v.book not in held and v.kjv.strip() and v.web.strip()]
    test = [v for v in verses if v.book in held and v.kjv.strip() and v.web.strip()]
    rng = np.random.default_rng(seed)
    if n_pool is not None and n_pool < len(pool):
        pool = [pool[i] for i in np.sort(rng.choice(len(pool), n_pool, replace=False))]
    if n_test is not None and n_test < len(test):
        test = [test[i] for i in np.sort(rng.choice(len(test), n_test, replace=False))]
    return RewriteTask("KJV-WEB", "KJV: {source}\nWEB: {target}", [v.kjv for v in pool], [v.web for v in pool],
                       [v.kjv for v in test], [v.web for v in test],
                       [f"pool: {len(pool)} verses of training books; queries: {len(test)} verses of held-out books "
                        f"{', '.join(HELDOUT_BOOKS)} (seed {seed})"])
