"""Evaluation of sentence embeddings: STS, transfer, clustering, retrieval, geometry, reports."""

from __future__ import annotations

from contrastkit.evaluation.senteval import (
    DATA_ENV_VAR,
    STS_TASK_NAMES,
    DataNotFoundError,
    STSTask,
    candidate_data_dirs,
    load_sts_task,
    resolve_senteval_dir,
)
from contrastkit.evaluation.cache import EmbeddingCache
from contrastkit.evaluation.clustering import evaluate_clustering
from contrastkit.evaluation.retrieval_tasks import RETRIEVAL_TASKS, build_retrieval_task, evaluate_retrieval_suite
from contrastkit.evaluation.suite import SUITES, evaluate_all
from contrastkit.evaluation.transfer import TRANSFER_TASKS, evaluate_transfer
from contrastkit.evaluation.sts import (
    SIMCSE_DEV_TASKS,
    SIMCSE_TASKS,
    EncodeFn,
    STSResults,
    TaskResult,
    evaluate_sts,
    paired_cosine,
    report_sts,
    score_task,
    sickr_dev,
    stsb_dev,
)

__all__ = [
    "DATA_ENV_VAR",
    "EmbeddingCache",
    "RETRIEVAL_TASKS",
    "SUITES",
    "TRANSFER_TASKS",
    "build_retrieval_task",
    "evaluate_all",
    "evaluate_clustering",
    "evaluate_retrieval_suite",
    "evaluate_transfer",
    "DataNotFoundError",
    "EncodeFn",
    "SIMCSE_DEV_TASKS",
    "SIMCSE_TASKS",
    "STSResults",
    "STSTask",
    "STS_TASK_NAMES",
    "TaskResult",
    "candidate_data_dirs",
    "evaluate_sts",
    "load_sts_task",
    "paired_cosine",
    "report_sts",
    "resolve_senteval_dir",
    "score_task",
    "sickr_dev",
    "stsb_dev",
]
