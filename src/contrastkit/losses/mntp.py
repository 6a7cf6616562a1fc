"""Masked next-token prediction (MNTP): LLM2Vec's second step, as pure functions over tensors.

BehnamGhader et al., 2024, "LLM2Vec: Large Language Models Are Secretly Powerful Text Encoders": after the
decoder's attention is made bidirectional, a fraction of the input tokens is masked and each masked token
at position ``i`` is predicted from the model's output at position ``i - 1`` through the (frozen) LM head:
the causal LM's own "next token" readout, now seeing both sides. This is exactly transformers'
``*ForCausalLM`` loss with labels that are -100 everywhere except at the masked positions, which is how the
reference code (``experiments/run_mntp.py``, ``LlamaBiForMNTP``) computes it.

:func:`mask_tokens` draws the masked positions (BERT's 80 % mask token / 10 % random token / 10 % kept, the
reference's default collator, or 100 % mask token); :func:`mntp` is the loss. Neither knows about a model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100
"""Label of a position that is not predicted."""


def mntp(hidden: Tensor, vocab: Tensor, labels: Tensor, *, softcap: float | None = None) -> Tensor:
    """Mean cross-entropy of each masked token predicted from the previous position's output.

    ``hidden``: (B, T, d) last hidden states (after the final norm) of the masked input; ``vocab``: (V, d) LM
    head weight (logits = hidden @ vocab.T); ``labels``: (B, T) the original token id where a token was
    masked, ``IGNORE`` (-100) elsewhere. The loss is the mean over every (b, i >= 1) with a label of
    ``-log softmax(hidden[b, i-1] @ vocab.T)[labels[b, i]]`` (a label at i = 0 has no previous position and
    is ignored, as in the causal LM loss the reference shifts). ``softcap``: Gemma's final-logit soft cap
    (``cap * tanh(logits / cap)``) when the model has one. Only the predicted rows are projected to the
    vocabulary (memory M x V, not B x T x V).
    """
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        raise ValueError(f"mntp: hidden must be (B, T, d) and labels (B, T); got {tuple(hidden.shape)} and "
                         f"{tuple(labels.shape)}")
    targets = labels[:, 1:]
    keep = targets != IGNORE
    if not bool(keep.any()):  # nothing masked in this batch: a zero that still carries the graph
        return hidden.sum() * 0.0
    states = hidden[:, :-1][keep]  # (M, d): the output right before each masked token
    logits = states @ vocab.t()
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.float(), targets[keep])


def mask_tokens(input_ids: Tensor, attention_mask: Tensor, *, probability: float, mask_id: int, vocab_size: int,
                special_ids: Iterable[int] = (), replace: float = 0.8, randomize: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Choose MNTP's masked positions: returns (masked input ids, labels with ``IGNORE`` where not masked).

    Each real, non-special token whose previous position is a real token (so it can be predicted from it)
    is chosen with ``probability``; of the chosen, ``replace`` become ``mask_id``, ``randomize`` a random
    vocabulary id, the rest stay (BERT's 80/10/10, the LLM2Vec reference's default; ``replace=1`` is its
    'all_mask' collator). Padding, special tokens and a sequence's first real token are never chosen.
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"mask probability must be in (0, 1), got {probability}")
    if replace < 0 or randomize < 0 or replace + randomize > 1:
        raise ValueError(f"replace ({replace}) and randomize ({randomize}) must be >= 0 and sum to at most 1")
    real = attention_mask.bool()
    candidate = real.clone()
    candidate[:, 0] = False
    candidate[:, 1:] &= real[:, :-1]
    for sid in set(special_ids):
        candidate &= input_ids != sid
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = candidate & (draw < probability)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    how = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    masked = input_ids.clone()
    masked[chosen & (how < replace)] = mask_id
    rand = chosen & (how >= replace) & (how < replace + randomize)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    masked[rand] = random_ids[rand]
    return masked, labels


__all__ = ["IGNORE", "mask_tokens", "mntp"]
