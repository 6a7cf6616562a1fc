"""What an embed function hands to the loss: anchors, positives, optional negatives and extras."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Embedded:
    """Embeddings of one (micro-)batch.

    ``anchor`` and ``positive`` are ``(B, d)``; ``negatives`` is ``(B, d)`` or ``(B, k, d)``
    (hard-negative columns) or None; ``extras`` holds per-row tensors the loss takes as keyword
    arguments (gold scores, teacher scores...). The loss is called
    ``loss_fn(anchor, positive, negatives, **extras)``.
    """

    anchor: Tensor
    positive: Tensor
    negatives: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def float(self) -> Embedded:
        """The same embeddings (and floating-point extras) as float32, e.g. after a bf16 forward."""
        return Embedded(self.anchor.float(), self.positive.float(),
                        None if self.negatives is None else self.negatives.float(),
                        {k: v.float() if v.is_floating_point() else v for k, v in self.extras.items()})

    def loss(self, loss_fn: Callable[..., Tensor]) -> Tensor:
        """``loss_fn(anchor, positive, negatives, **extras)``."""
        return loss_fn(self.anchor, self.positive, self.negatives, **self.extras)


EmbedFn = Callable[[Any, Sequence[Any]], "Embedded | tuple[Tensor, Tensor, Tensor | None]"]


def as_embedded(out: Embedded | tuple[Tensor, Tensor, Tensor | None]) -> Embedded:
    """Accept an :class:`Embedded` or the legacy ``(anchor, positive, negatives)`` tuple."""
    if isinstance(out, Embedded):
        return out
    if isinstance(out, tuple) and len(out) == 3:
        return Embedded(out[0], out[1], out[2])
    raise TypeError(f"an embed function must return Embedded or (anchor, positive, negatives), "
                    f"got {type(out).__name__}")


__all__ = ["Embedded", "EmbedFn", "as_embedded"]
