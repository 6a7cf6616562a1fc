"""Evaluation of sentence embeddings: STS with the SimCSE/SentEval protocol."""

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
