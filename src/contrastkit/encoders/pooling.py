"""Poolers: turn a backbone's token states into one vector per text.

``first_last_avg`` follows SimCSE's ``avg_first_last`` (mean of the first and the
last layer's token states); ``last_token`` and ``prompt`` take the state of the
last real token (PromptEOL: Jiang et al., "Scaling Sentence Embeddings with Large
Language Models", 2023); ``cls_mlp`` is SimCSE's CLS pooling with an MLP head used
only during training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

POOLINGS = ("cls", "cls_mlp", "mean", "first_last_avg", "last_token", "prompt",
            # prompt readouts of decoder LMs, run by encoders/readouts.py (``prompt`` = PromptEOL is one of them)
            "prompt_icl", "metaeol", "pretended_cot", "knowledge", "contrastive_prompt", "token_prepending", "echo")


def needs_all_hidden_states(pooling: str) -> bool:
    """Whether the pooler reads more than the last layer."""
    return pooling == "first_last_avg"


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """Mean of token states over positions where ``mask`` is 1."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


def last_token_index(mask: Tensor) -> Tensor:
    """Index of the last position with mask 1, for left- or right-padded batches."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask).argmax(dim=1)


def pool(pooling: str, hidden_states: tuple[Tensor, ...] | None, last: Tensor, mask: Tensor) -> Tensor:
    """Apply pooler ``pooling`` to ``last`` (B, T, d) or, for first_last_avg, all hidden states."""
    if pooling in ("cls", "cls_mlp"):
        return last[:, 0]
    if pooling == "mean":
        return masked_mean(last, mask)
    if pooling == "first_last_avg":
        if hidden_states is None:
            raise ValueError("first_last_avg needs the backbone's hidden states")
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2, mask)
    if pooling in ("last_token", "prompt"):
        idx = last_token_index(mask)
        return last[torch.arange(last.shape[0], device=last.device), idx]
    raise ValueError(f"unknown pooling '{pooling}'; known: {', '.join(POOLINGS)}")


class MLPHead(nn.Module):
    """SimCSE's training-time projection: Linear(d, d) + tanh over the pooled vector."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.activation = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        """Project pooled embeddings."""
        return self.activation(self.dense(x))
