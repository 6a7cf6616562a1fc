"""Reranking: a cross-encoder trained contrastively with teacher-mined negatives, an LLM yes/no reranker,
retrieve-then-rerank over a store, and distillation of the cross-encoder into a bi-encoder.

See :mod:`.cross_encoder`, :mod:`.llm`, :mod:`.training` and :mod:`.pipeline` for the papers each follows.
"""

from __future__ import annotations

from typing import Any

from .cross_encoder import CrossEncoderReranker
from .llm import DEFAULT_VIEWS, LLMReranker
from .pipeline import Reranker, RerankResult, rerank, rerank_candidates, retrieve_then_rerank
from .training import distill_cross_encoder, listwise_softmax_loss, mine_rerank_examples, train_cross_encoder

__all__ = ["DEFAULT_VIEWS", "CrossEncoderReranker", "LLMReranker", "RerankResult", "Reranker",
           "distill_cross_encoder", "listwise_softmax_loss", "load_reranker", "mine_rerank_examples", "rerank",
           "rerank_candidates", "retrieve_then_rerank", "train_cross_encoder"]

LLM_PREFIX = "llm:"


def load_reranker(name: str, **kwargs: Any) -> CrossEncoderReranker | LLMReranker:
    """A reranker by name: ``llm:<causal LM>`` (e.g. ``llm:smollm2-135m``) or a cross-encoder dir / encoder."""
    if name.startswith(LLM_PREFIX):
        return LLMReranker.from_pretrained(name[len(LLM_PREFIX):], **kwargs)
    return CrossEncoderReranker.from_pretrained(name, **kwargs)
