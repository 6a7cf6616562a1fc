"""Contrastive objectives: pure functions over embeddings, looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..registry import Registry
from .infonce import infonce

LossFn = Callable[..., Tensor]
LOSSES: Registry[LossFn] = Registry("loss")
LOSSES.register("infonce")(infonce)

__all__ = ["LOSSES", "LossFn", "infonce"]
