"""Pure functions over next-token scores ``(B, V)``: penalties, truncation filters, the plausibility cut, sampling.

Each returns new scores (never edits its input); a filtered-out token gets ``-inf``. They follow the
definitions of transformers' logits processors/warpers (same names, same edge cases: at least one token is
always kept), so results can be compared with ``generate()`` where it still has the method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

NEG_INF = float("-inf")


def repetition_penalty(scores: Tensor, ids: Tensor, mask: Tensor, penalty: float) -> Tensor:
    """Penalise every token already in the sequence: a positive score is divided by ``penalty``, a negative one
    multiplied (CTRL; Keskar et al., 2019, "CTRL: A Conditional Transformer Language Model for Controllable
    Generation"). ``ids``/``mask`` ``(B, T)``: the tokens so far and which are real (padding is not "seen")."""
    if penalty == 1.0:
        return scores
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    seen = torch.zeros_like(scores).scatter_add_(1, ids, mask.to(scores.dtype)) > 0
    return torch.where(seen, torch.where(scores < 0, scores * penalty, scores / penalty), scores)


def top_k_filter(scores: Tensor, k: int) -> Tensor:
    """Keep the ``k`` best tokens (ties with the k-th are kept) (Fan et al., 2018, "Hierarchical Neural Story
    Generation")."""
    if k <= 0 or k >= scores.shape[-1]:
        return scores
    kth = scores.topk(k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: Tensor, p: float, *, first_k: int = 256) -> Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``p``: nucleus sampling (Holtzman et
    al., 2020, "The Curious Case of Neural Text Degeneration").

    A token stays when the tokens more likely than it hold less than ``p`` (so the most likely always stays).
    Exact without sorting the vocabulary: the ``first_k`` most likely tokens are looked at first, 4x more while
    some row's nucleus is larger (a full sort of Gemma-3's 262k-token vocabulary at every step costs more than
    the step's matrix products)."""
    if p >= 1.0:
        return scores
    probs = scores.double().softmax(-1)  # float32 misplaces the cut by a token or two in a 262k vocabulary
    vocab = probs.shape[-1]
    k = min(first_k, vocab)
    while True:
        top, order = probs.topk(k, dim=-1)  # descending
        cum = top.cumsum(-1)
        if k == vocab or bool((cum[..., -1] >= p).all()):  # every row's nucleus ends within the k looked at
            break
        k = min(4 * k, vocab)
    keep = (cum - top) < p
    return scores.masked_fill(~torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, keep), NEG_INF)


def typical_filter(scores: Tensor, mass: float) -> Tensor:
    """Keep the tokens whose surprisal is closest to the distribution's entropy, up to probability ``mass``:
    locally typical sampling (Meister et al., 2023, "Locally Typical Sampling", TACL)."""
    if mass >= 1.0:
        return scores
    logp = scores.log_softmax(-1)
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1, keepdim=True)
    shifted = (-logp - entropy).abs()
    sorted_shift, order = shifted.sort(dim=-1)
    cum = scores.gather(-1, order).softmax(-1).cumsum(-1)
    last = (cum < mass).sum(-1, keepdim=True).clamp(max=scores.shape[-1] - 1)
    drop = sorted_shift > sorted_shift.gather(-1, last)
    return scores.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def plausibility_mask(logp: Tensor, alpha: float) -> Tensor:
    """``True`` where a token's probability is at least ``alpha`` times the most likely token's: the adaptive
    plausibility constraint of contrastive decoding (Li et al., 2023) and DoLa (Chuang et al., 2024).
    ``logp``: log-probabilities ``(B, V)``."""
    return logp >= logp.max(-1, keepdim=True).values + math.log(alpha)


def warp(scores: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
         typical_p: float | None = None) -> Tensor:
    """transformers' sampling warpers in its order: temperature, top-k, top-p, typical."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        scores = top_k_filter(scores, top_k)
    if top_p is not None:
        scores = top_p_filter(scores, top_p)
    if typical_p is not None:
        scores = typical_filter(scores, typical_p)
    return scores


def draw(scores: Tensor, generator: torch.Generator | None) -> Tensor:
    """Sample one token per row from ``softmax(scores)`` by inverting the CDF at one uniform draw per row.

    One ``torch.rand(B)`` per call makes the randomness explicit (a test can replay it) and robust: tokens whose
    probabilities differ in the last bit still pick the same token unless the draw falls on that boundary.
    """
    probs = F.softmax(scores.float(), dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    cdf = probs.cumsum(-1)
    idx = (cdf <= u * cdf[:, -1:]).sum(-1)
    last_positive = probs.shape[-1] - 1 - (probs > 0).flip(-1).float().argmax(-1)
    return torch.minimum(idx, last_positive)
