"""Self-Guided contrastive views (Kim, Yoo and Lee, "Self-Guided Contrastive Learning for BERT Sentence
Representations", ACL 2021), simplified.

SG-BERT clones BERT into a frozen copy and a tuned copy; the tuned copy's sentence embedding is
pulled towards the frozen copy's hidden states of a randomly chosen layer, max-pooled over tokens.
Here the frozen copy is taken when the view is built (before any training step, so a resumed run
uses the same one), a layer in 1..L is drawn per view and batch from the caller's generator, and the
configured loss (e.g. ``infonce``) compares the tuned embedding (anchor) with that pooled hidden
state (positive, no gradient). Simplifications: no SG-BERT regulariser towards the initial weights
and no redesigned NT-Xent; the anchor is the encoder's own pooling (use ``cls``/``cls_mlp`` as in
the paper).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor

from ..encoders.pooling import masked_mean

LayerPooling = Literal["max", "mean"]


def _pool_layer(states: Tensor, mask: Tensor, how: str) -> Tensor:
    if how == "mean":
        return masked_mean(states, mask)
    filled = states.masked_fill(~mask.bool().unsqueeze(-1), float("-inf"))
    return filled.max(dim=1).values


class SelfGuidedView:
    """Frozen copy of an encoder whose pooled intermediate layers are positives (SG-BERT, Kim et al. 2021)."""

    def __init__(self, encoder: Any, *, layer: int | None = None, layer_pooling: LayerPooling = "max") -> None:
        self.frozen = copy.deepcopy(encoder.backbone).eval()
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.num_layers = int(self.frozen.config.num_hidden_layers)
        if layer is not None and not 1 <= layer <= self.num_layers:
            raise ValueError(f"self_guided: layer must be in 1..{self.num_layers}, got {layer}")
        if layer_pooling not in ("max", "mean"):
            raise ValueError(f"self_guided: layer_pooling must be 'max' or 'mean', got {layer_pooling!r}")
        self.layer = layer
        self.layer_pooling = layer_pooling

    def layers(self, count: int, generator: torch.Generator) -> list[int]:
        """``count`` hidden-layer indices in 1..L (the fixed ``layer`` or uniform draws)."""
        if self.layer is not None:
            return [self.layer] * count
        return (torch.randint(1, self.num_layers + 1, (count,), generator=generator)).tolist()

    @torch.no_grad()
    def positives(self, features: dict[str, Tensor], layers: list[int]) -> list[Tensor]:
        """Pooled (N, d) hidden states of the frozen copy at each of ``layers``."""
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.frozen(**inputs, output_hidden_states=True, return_dict=True)
        return [_pool_layer(out.hidden_states[i], features["attention_mask"], self.layer_pooling).float()
                for i in layers]


__all__ = ["SelfGuidedView"]
