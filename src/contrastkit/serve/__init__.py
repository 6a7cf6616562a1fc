"""HTTP service: OpenAI-compatible embeddings, similarity, store search, rerank and completions, with request
micro-batching."""

from .app import ApiError, EncodeFns, GenerateFn, create_app, encoder_fn, generator_fn
from .batcher import BatchStats, MicroBatcher

__all__ = ["ApiError", "BatchStats", "EncodeFns", "GenerateFn", "MicroBatcher", "create_app", "encoder_fn",
           "generator_fn"]
