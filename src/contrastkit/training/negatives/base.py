"""The ``NegativeSource`` protocol: how the trainer turns one micro-batch into a loss and gradients."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..batch import Embedded

EmbedFloat = Callable[[nn.Module, Sequence[Any]], Embedded]
"""An embed function as the trainer hands it to a source: autocast applied, outputs float32."""
LossFn = Callable[..., Tensor]


@runtime_checkable
class NegativeSource(Protocol):
    """Computes the loss of a micro-batch and back-propagates it; owns any state across steps.

    The trainer calls ``setup`` once before training (and before a checkpoint is loaded),
    ``loss_and_backward`` for every micro-batch, ``before_optimizer_step`` once the gradients of
    ``grad_accumulation`` micro-batches are summed, ``after_optimizer_step`` after the update, and
    saves ``state_dict()`` in every checkpoint so that a resumed run continues exactly.
    """

    def setup(self, encoder: nn.Module) -> None: ...

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float: ...

    def before_optimizer_step(self, encoder: nn.Module) -> None: ...

    def after_optimizer_step(self, encoder: nn.Module) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Stateless:
    """Default no-op hooks for sources without state across steps."""

    def setup(self, encoder: nn.Module) -> None:
        """Nothing to prepare."""

    def before_optimizer_step(self, encoder: nn.Module) -> None:
        """Nothing to do before the update."""

    def after_optimizer_step(self, encoder: nn.Module) -> None:
        """Nothing to do after the update."""

    def state_dict(self) -> dict[str, Any]:
        """No state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state to restore."""


__all__ = ["EmbedFloat", "LossFn", "NegativeSource", "Stateless"]
