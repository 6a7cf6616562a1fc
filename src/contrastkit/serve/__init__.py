"""HTTP service: OpenAI-compatible embeddings, similarity and store search, with request micro-batching."""

from .app import ApiError, EncodeFns, create_app, encoder_fn
from .batcher import BatchStats, MicroBatcher

__all__ = ["ApiError", "BatchStats", "EncodeFns", "MicroBatcher", "create_app", "encoder_fn"]
