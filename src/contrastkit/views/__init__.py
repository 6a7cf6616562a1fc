"""Views: how the (anchor, positive[, negatives]) embeddings of a batch are produced.

``embed_batch`` covers the two core cases. Single texts get SimCSE's dropout views
(Gao et al., 2021): the batch is encoded twice in one forward pass of 2N rows, so the
only difference between anchor and positive is the dropout mask. Pairs and triplets
are encoded column by column in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


from torch import Tensor

from ..data.examples import Example
from .cutoff import EMBEDDING_VIEWS, embed_with_cutoff, feature_cutoff, token_cutoff, token_shuffle
from .edits import (PAIR_SAMPLERS, TEXT_EDITS, WordNetUnavailableError, crop, get_wordnet, reorder, span_deletion,
                    span_sampling, synonym_substitution, word_deletion, word_repetition)


def _repeat_features(features: dict[str, Tensor], times: int) -> dict[str, Tensor]:
    return {k: v.repeat(times, 1) for k, v in features.items()}


def embed_batch(encoder: Any, examples: Sequence[Example], *,
                length_buckets: int = 1) -> tuple[Tensor, Tensor, Tensor | None]:
    """Embed a batch into (anchor (N,d), positive (N,d), negatives (N,k,d) or None).

    ``length_buckets`` > 1 runs the forward pass as that many length-sorted chunks (less padding).
    """
    width = len(examples[0].texts)
    if any(len(e.texts) != width for e in examples):
        raise ValueError("all examples of a batch must have the same number of texts")
    n = len(examples)
    if width == 1:
        if length_buckets > 1:
            emb = encoder.embed_texts([e.texts[0] for e in examples] * 2, buckets=length_buckets).float()
        else:
            features = encoder.tokenize([e.texts[0] for e in examples])
            emb = encoder(_repeat_features(features, 2)).float()
        return emb[:n], emb[n:], None
    texts = [e.texts[c] for c in range(width) for e in examples]
    emb = encoder.embed_texts(texts, buckets=length_buckets).float().view(width, n, -1)
    negatives = emb[2:].transpose(0, 1) if width > 2 else None
    return emb[0], emb[1], negatives


__all__ = ["EMBEDDING_VIEWS", "PAIR_SAMPLERS", "TEXT_EDITS", "WordNetUnavailableError", "crop", "embed_batch",
           "embed_with_cutoff", "feature_cutoff", "get_wordnet", "reorder", "span_deletion", "span_sampling",
           "synonym_substitution", "token_cutoff", "token_shuffle", "word_deletion", "word_repetition"]
