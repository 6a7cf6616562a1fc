"""Retrieval tasks built from local paraphrase data, run by :func:`contrastkit.evaluation.retrieval.evaluate_retrieval`.

No BEIR corpus ships with these machines, so these tasks turn labelled sentence pairs into
:class:`~contrastkit.data.beir.RetrievalTask` objects (paraphrase mining as retrieval, in the
spirit of MTEB's bitext-mining and duplicate-question tasks):

* ``STSB-paraphrase``: STS-B test split (SentEval text); a pair is a paraphrase when its
  gold score is >= 4.0 ("mostly equivalent"/"completely equivalent" on the STS scale): 338 of
  1,379 pairs.
* ``SICK-paraphrase``: SICK test split (SentEval's ``SICK_test_annotated.txt``); relatedness
  >= 4.5 *and* entailment label ENTAILMENT (A entails B; relatedness alone admits pairs
  such as "playing in the leaves"/"sleeping in the leaves"): 938 of 4,927 pairs.
* ``MRPC-paraphrase``: MRPC test split, pairs labelled paraphrase (1,147 of 1,725).

For these three, the corpus is every distinct sentence of the split (both sides of every
pair, paraphrase or not: the others are distractors); every sentence in at least one
paraphrase pair is a query, and its relevant documents are all its annotated partners
(several when it occurs in several pairs; no transitive closure). A query's id is its own
corpus id, and the suite runs with BEIR's ``ignore_identical_ids``, so a query never
retrieves itself. Pairs of two identical strings are skipped and counted
(``extra["n_identical_pairs"]``); a pair listed twice (either order) is one link
(``extra["n_links"]``: distinct unordered paraphrase links, e.g. 932 for SICK's 938 pairs).

* ``Bible-KJV-WEB``: the held-out books of :mod:`contrastkit.data.embedded` (never training
  pairs there): each King James verse is a query, the corpus is the distinct World English
  Bible verses of those books, and the relevant document is the same verse's WEB text
  (3,781 queries). Needs ``diatheke`` and the SWORD modules (or the extracted cache); without
  them :func:`evaluate_retrieval_suite` skips the task with a warning naming what to install.

Metrics (x 100): nDCG@10 (main), MRR@10, Recall@1/10/100, MAP@100, as defined in
:mod:`contrastkit.evaluation.retrieval`.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contrastkit.data.beir import RetrievalTask
from contrastkit.errors import DataError
from contrastkit.evaluation.results import TableResults
from contrastkit.evaluation.retrieval import evaluate_retrieval
from contrastkit.evaluation.senteval import DataNotFoundError, load_sts_task, resolve_senteval_dir
from contrastkit.evaluation.transfer import load_transfer_task

__all__ = ["RETRIEVAL_TASKS", "STSB_THRESHOLD", "SICK_THRESHOLD", "RetrievalResults", "TaskUnavailable",
           "build_retrieval_task", "evaluate_retrieval_suite", "paraphrase_task"]

EncodeFn = Callable[[list[str]], Any]

RETRIEVAL_TASKS: tuple[str, ...] = ("STSB-paraphrase", "SICK-paraphrase", "MRPC-paraphrase", "Bible-KJV-WEB")
"""Retrieval tasks :func:`build_retrieval_task` knows."""

STSB_THRESHOLD = 4.0
"""Lowest STS-B gold score (0-5) of a paraphrase pair."""

SICK_THRESHOLD = 4.5
"""Lowest SICK relatedness (1-5) of a paraphrase pair (which must also be labelled ENTAILMENT)."""


class TaskUnavailable(DataError):
    """A task's optional data source (e.g. ``diatheke`` for the Bible) is not installed."""


def paraphrase_task(name: str, pairs: Sequence[tuple[str, str]], positive: Sequence[bool],
                    extra: dict[str, Any] | None = None) -> RetrievalTask:
    """Paraphrase retrieval over a pair set: corpus = distinct sentences, query = sentence, relevant = its partners."""
    if len(pairs) != len(positive):
        raise ValueError(f"{name}: {len(pairs)} pairs but {len(positive)} labels")
    ids: dict[str, str] = {}
    for a, b in pairs:
        for s in (a, b):
            if s not in ids:
                ids[s] = f"s{len(ids)}"
    qrels: dict[str, dict[str, int]] = {}
    n_identical = n_pos = 0
    for (a, b), pos in zip(pairs, positive):
        if not pos:
            continue
        n_pos += 1
        if a == b:
            n_identical += 1
            continue
        qrels.setdefault(ids[a], {})[ids[b]] = 1
        qrels.setdefault(ids[b], {})[ids[a]] = 1
    queries = [(i, s) for s, i in ids.items() if i in qrels]
    n_links = sum(len(r) for r in qrels.values()) // 2
    info = {"n_pairs": len(pairs), "n_positive_pairs": n_pos, "n_identical_pairs": n_identical,
            "n_links": n_links, "exclude_self": True, **(extra or {})}
    return RetrievalTask(corpus_ids=list(ids.values()), corpus_texts=list(ids), query_ids=[q for q, _ in queries],
                         query_texts=[s for _, s in queries], qrels=qrels, name=name, extra=info)


def _sick_pairs(data_dir: str | os.PathLike[str] | None) -> tuple[list[tuple[str, str]], list[bool], str]:
    path = resolve_senteval_dir(data_dir, needed_for="retrieval task SICK-paraphrase") / "SICK" / "SICK_test_annotated.txt"
    if not path.is_file():
        raise DataNotFoundError(f"SICK-paraphrase needs {path}", searched=[path])
    pairs: list[tuple[str, str]] = []
    pos: list[bool] = []
    with io.open(path, "r", encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            f = line.strip().split("\t")
            if i == 1 or not line.strip():
                continue
            if len(f) < 5:
                raise DataError(f"expected 5 tab-separated fields (pair_ID, A, B, relatedness, entailment), "
                                f"got {len(f)}", path=str(path), line=i)
            try:
                rel = float(f[3])
            except ValueError:
                raise DataError(f"relatedness {f[3]!r} is not a number", path=str(path), line=i) from None
            pairs.append((" ".join(f[1].split()), " ".join(f[2].split())))
            pos.append(rel >= SICK_THRESHOLD and f[4].strip() == "ENTAILMENT")
    return pairs, pos, str(path)


def _bible_task() -> RetrievalTask:
    from contrastkit.data.embedded import HELDOUT_BOOKS, embedded_pairs

    try:
        pairs = embedded_pairs("bible-heldout")
    except DataError as e:
        raise TaskUnavailable(f"Bible-KJV-WEB unavailable: {e}") from e
    doc_ids: dict[str, str] = {}
    for _, web in pairs:
        doc_ids.setdefault(web, f"web{len(doc_ids)}")
    qrels = {f"kjv{i}": {doc_ids[web]: 1} for i, (_, web) in enumerate(pairs)}
    return RetrievalTask(corpus_ids=list(doc_ids.values()), corpus_texts=list(doc_ids),
                         query_ids=list(qrels), query_texts=[kjv for kjv, _ in pairs], qrels=qrels,
                         name="Bible-KJV-WEB",
                         extra={"books": list(HELDOUT_BOOKS), "n_pairs": len(pairs), "exclude_self": False,
                                "source": "diatheke: KJV -> WEB, held-out books"})


def build_retrieval_task(name: str, data_dir: str | os.PathLike[str] | None = None) -> RetrievalTask:
    """Build one task of :data:`RETRIEVAL_TASKS` (see the module docstring for its construction)."""
    if name == "STSB-paraphrase":
        sts = load_sts_task("STSBenchmark", data_dir, hub=False)
        return paraphrase_task(name, sts.pairs, [s >= STSB_THRESHOLD for s in sts.scores],
                               {"source": sts.source, "rule": f"score >= {STSB_THRESHOLD}"})
    if name == "SICK-paraphrase":
        pairs, pos, src = _sick_pairs(data_dir)
        return paraphrase_task(name, pairs, pos,
                               {"source": src, "rule": f"relatedness >= {SICK_THRESHOLD} and ENTAILMENT"})
    if name == "MRPC-paraphrase":
        test = load_transfer_task("MRPC", data_dir, needed_for="retrieval task MRPC-paraphrase").splits["test"]
        assert test.texts_b is not None
        return paraphrase_task(name, list(zip(test.texts, test.texts_b)), [bool(y == 1) for y in test.labels],
                               {"source": "MRPC msr_paraphrase_test.txt", "rule": "Quality == 1"})
    if name == "Bible-KJV-WEB":
        return _bible_task()
    raise ValueError(f"unknown retrieval task {name!r}; expected one of {', '.join(RETRIEVAL_TASKS)}")


@dataclass
class RetrievalResults(TableResults):
    """Results of :func:`evaluate_retrieval_suite`: per-task ranking metrics (x 100), skipped tasks, timings."""

    tasks: dict[str, dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    suite = "retrieval"
    main_metric = "ndcg@10"
    columns = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100", "n_queries", "n_corpus")

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """Per-task metrics as :func:`evaluate_retrieval` returns them."""
        return {k: dict(v) for k, v in self.tasks.items()}

    def extra_dict(self) -> dict[str, Any]:
        """Protocol and skipped tasks (with the reason)."""
        return {"protocol": "exact cosine search; nDCG@10, MRR@10, Recall@1/10/100, MAP@100 x100 "
                            "(pytrec_eval definitions); a query never retrieves itself"}

    @property
    def note(self) -> str:  # type: ignore[override]
        """Footnote of the Markdown table (skipped tasks are added after it)."""
        return "Metrics x100, exact cosine search."


def _limit_queries(task: RetrievalTask, limit: int, seed: int) -> RetrievalTask:
    """At most ``limit`` random queries (corpus unchanged); for quick checks only."""
    if len(task.query_ids) <= limit:
        return task
    keep = np.sort(np.random.default_rng(seed).choice(len(task.query_ids), limit, replace=False)).tolist()
    qids = [task.query_ids[i] for i in keep]
    return RetrievalTask(corpus_ids=task.corpus_ids, corpus_texts=task.corpus_texts, query_ids=qids,
                         query_texts=[task.query_texts[i] for i in keep], qrels={q: task.qrels[q] for q in qids},
                         name=task.name, extra={**task.extra, "limit": limit})


def evaluate_retrieval_suite(encode: EncodeFn, tasks: Sequence[str] = RETRIEVAL_TASKS,
                             data_dir: str | os.PathLike[str] | None = None, *, limit: int | None = None,
                             seed: int = 0, progress: bool = False, skip_missing: bool = False) -> RetrievalResults:
    """Run the local retrieval tasks; a task whose data is missing is skipped alone, with a warning.

    An uninstalled optional source (``diatheke`` for the Bible) is always a skip; missing benchmark data
    raises :class:`DataNotFoundError` unless ``skip_missing`` (then it is a skip too).
    ``encode`` is wrapped in an in-memory :class:`~contrastkit.evaluation.cache.EmbeddingCache`
    (unless it is one already), so queries that are also corpus sentences are encoded once.
    ``limit`` keeps that many random queries per task (``seed``), the corpus whole: quick checks only.
    """
    from contrastkit.evaluation.cache import EmbeddingCache

    for n in tasks:
        if n not in RETRIEVAL_TASKS:
            raise ValueError(f"unknown retrieval task {n!r}; expected one of {', '.join(RETRIEVAL_TASKS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    t0 = time.perf_counter()
    enc = encode if isinstance(encode, EmbeddingCache) else EmbeddingCache(encode)
    out: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    it: Any = tasks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(tasks, desc="retrieval", unit="task")
    for name in it:
        try:
            task = build_retrieval_task(name, data_dir)
        except (TaskUnavailable, DataNotFoundError) as e:
            if isinstance(e, DataNotFoundError) and not skip_missing:
                raise
            skipped[name] = str(e).splitlines()[0]
            warnings.warn(f"skipping retrieval task {name}: {e}", UserWarning, stacklevel=2)
            continue
        if limit is not None:
            task = _limit_queries(task, limit, seed)
        out[name] = evaluate_retrieval(enc, task, ignore_identical_ids=bool(task.extra.get("exclude_self", True)))
    return RetrievalResults(out, skipped=skipped, elapsed_s=time.perf_counter() - t0)
