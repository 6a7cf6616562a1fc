"""In-context example selection: selectors over an Encoder's embeddings of a demonstration pool (random, kNN,
MMR, CEIL's DPP, Se^2-style sequential, label coverage) and a harness that prompts a local causal LM with them.

    from contrastkit.icl import load_classification_task, evaluate_classification
    task = load_classification_task("SST2").limit(n_test=200, n_pool=1000)
    enc = Encoder.from_pretrained("all-MiniLM-L6-v2")
    model, tok = load_causal_lm("smollm2-135m")
    res = evaluate_classification(model, tok, task, enc.encode(task.pool_texts), enc.encode(task.test_texts),
                                  selector="knn", k=4)
"""

from .harness import ICLResult, build_prompt, chrf, evaluate_classification, evaluate_rewriting, select_for_queries
from .scoring import calibrate_content_free, continuation_logprobs, normalize_label_scores
from .selectors import (
    SELECTORS,
    Selector,
    cosine_to_query,
    dpp_log_det,
    greedy_dpp_map,
    select_dpp,
    select_knn,
    select_label_coverage,
    select_mmr,
    select_random,
    select_sequential,
)
from .tasks import (
    CLASSIFICATION_TASKS,
    ICL_TASKS,
    ClassificationTask,
    RewriteTask,
    load_bible_rewrite_task,
    load_classification_task,
)

__all__ = ["CLASSIFICATION_TASKS", "ICL_TASKS", "SELECTORS", "ClassificationTask", "ICLResult", "RewriteTask",
           "Selector", "build_prompt", "calibrate_content_free", "chrf", "continuation_logprobs", "cosine_to_query",
           "dpp_log_det", "evaluate_classification", "evaluate_rewriting", "greedy_dpp_map",
           "load_bible_rewrite_task", "load_classification_task", "normalize_label_scores", "select_dpp",
           "select_for_queries", "select_knn", "select_label_coverage", "select_mmr", "select_random",
           "select_sequential"]
