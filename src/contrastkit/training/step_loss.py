"""Step losses: the whole loss of a micro-batch computed by one function, for models that are not sentence encoders.

A cross-encoder, a causal LM or a set-contrastive encoder has no (anchor, positive, negatives) embeddings to hand a
loss: its ``step_loss(model, batch)`` runs the forward pass and the loss together (see
:meth:`~contrastkit.training.trainer.Trainer.for_step_loss`). The trainer calls it under its autocast (and DDP);
:class:`WholeLoss` takes the place of a negative source and back-propagates the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from .negatives.base import Stateless

StepLoss = Callable[[Any, Sequence[Any]], "Tensor | dict[str, Tensor]"]
"""``step_loss(model, batch)``: a scalar loss, or named scalar losses with the total under ``'loss'``."""


class WholeLoss(Stateless):
    """Back-propagate a step loss (which the trainer hands over as ``embed``, returning named losses)."""

    def loss_and_backward(self, model: nn.Module, batch: Sequence[Any], embed: Callable[..., Any], loss_fn: Any,
                          scale: float) -> dict[str, float]:
        """Named losses of one micro-batch (unscaled); gradients of ``scale * loss`` are accumulated."""
        losses = embed(model, batch)
        (losses["loss"] * scale).backward()
        return {name: float(value.detach()) for name, value in losses.items()}


__all__ = ["StepLoss", "WholeLoss"]
