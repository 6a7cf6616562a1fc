"""Shared by the reranking and PCA benchmarks: the paraphrase retrieval tasks, optionally cut down for smoke runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from contrastkit.data.beir import RetrievalTask
from contrastkit.evaluation.retrieval_tasks import TaskUnavailable, build_retrieval_task
from contrastkit.evaluation.senteval import DataNotFoundError


def cut_task(task: RetrievalTask, limit: int | None, max_corpus: int | None, seed: int = 0) -> RetrievalTask:
    """At most ``limit`` random queries; at most ``max_corpus`` documents (their relevant ones + random others)."""
    rng = np.random.default_rng(seed)
    qidx = list(range(len(task.query_ids)))
    if limit is not None and len(qidx) > limit:
        qidx = sorted(rng.choice(len(qidx), limit, replace=False).tolist())
    qids = [task.query_ids[i] for i in qidx]
    corpus_ids, corpus_texts = list(task.corpus_ids), list(task.corpus_texts)
    if max_corpus is not None and len(corpus_ids) > max_corpus:
        need = {d for q in qids for d in task.qrels.get(q, {})} | set(qids)
        keep = [i for i, d in enumerate(corpus_ids) if d in need]
        others = [i for i, d in enumerate(corpus_ids) if d not in need]
        extra = max(0, max_corpus - len(keep))
        keep = sorted(keep + rng.choice(others, min(extra, len(others)), replace=False).tolist())
        corpus_ids, corpus_texts = [corpus_ids[i] for i in keep], [corpus_texts[i] for i in keep]
    return RetrievalTask(corpus_ids=corpus_ids, corpus_texts=corpus_texts, query_ids=qids,
                         query_texts=[task.query_texts[i] for i in qidx], qrels={q: task.qrels[q] for q in qids},
                         name=task.name, extra={**task.extra, "limit": limit, "max_corpus": max_corpus})


def load_tasks(names: list[str], limit: int | None, max_corpus: int | None) -> tuple[dict[str, RetrievalTask],
                                                                                       dict[str, str]]:
    """The named tasks (cut down), and the ones skipped with the reason."""
    tasks: dict[str, RetrievalTask] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            tasks[name] = cut_task(build_retrieval_task(name), limit, max_corpus)
        except (TaskUnavailable, DataNotFoundError) as e:
            skipped[name] = str(e).splitlines()[0]
    return tasks, skipped


def exclude_self(task: RetrievalTask) -> bool:
    """Whether a query must not retrieve itself (the paraphrase tasks; not the Bible's KJV -> WEB)."""
    return bool(task.extra.get("exclude_self", True))


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    out = ["| " + " | ".join(header) + " |", rule]
    out += ["| " + " | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
