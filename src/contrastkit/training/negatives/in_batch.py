"""In-batch negatives: every other example's positive (and hard negatives) in the same micro-batch.

The standard of SimCSE (Gao et al. 2021) and most contrastive sentence encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .base import EmbedFloat, LossFn, Stateless


class InBatchNegatives(Stateless):
    """Embed the micro-batch, compute the loss on it and back-propagate ``scale * loss``."""

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float:
        """Loss of one micro-batch (unscaled); gradients of ``scale * loss`` are accumulated."""
        loss = embed(encoder, batch).loss(loss_fn)
        (loss * scale).backward()
        return float(loss.detach())


__all__ = ["InBatchNegatives"]
