"""SetCSE (Liu, "SetCSE: Set Operations using Contrastive Learning of Sentence Embeddings", ICLR 2024): set
embeddings, set operations (intersection, difference, series, ranking by set similarity), inter-set
contrastive fine-tuning and set-operation retrieval evaluation."""

from __future__ import annotations

from .evaluate import SetOpTask, build_set_task, evaluate_set_task, labelled_sentences
from .ops import (SetCSE, difference, difference_scores, intersection, intersection_scores, rank, series,
                  set_embedding, set_similarity)
from .train import fine_tune_inter_set, inter_set_loss

__all__ = ["SetCSE", "SetOpTask", "build_set_task", "difference", "difference_scores", "evaluate_set_task",
           "fine_tune_inter_set", "inter_set_loss", "intersection", "intersection_scores", "labelled_sentences",
           "rank", "series", "set_embedding", "set_similarity"]
