"""InfoNCE (NT-Xent) with temperature, as used by SimCSE.

Gao, Yao and Chen, "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP 2021.
Unsupervised: anchor and positive are two dropout views of the same sentence and
the other positives in the batch are negatives. Supervised: hard negatives are
appended to the candidates; SimCSE weights each anchor's own hard negative by
``alpha`` by adding ``log(alpha)`` to its logit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


def infonce(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    hard_negative_weight: float = 1.0,
    symmetric: bool = False,
) -> Tensor:
    """Mean InfoNCE loss over a batch of anchors.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives; row i belongs to anchor i,
            every row is a candidate for every anchor.
        temperature: tau; logits are cosine / tau.
        hard_negative_weight: alpha > 0 applied to each anchor's own hard negatives.
        symmetric: also score positive -> anchor (in-batch) and average the two directions.
    """
    if anchor.ndim != 2 or positive.shape != anchor.shape:
        raise ValueError(f"anchor and positive must both be (N, d); got {tuple(anchor.shape)} and {tuple(positive.shape)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature}")
    if hard_negative_weight <= 0:
        raise ConfigError(f"hard_negative_weight must be > 0, got {hard_negative_weight}")
    n = anchor.shape[0]
    a = F.normalize(anchor, dim=-1)
    p = F.normalize(positive, dim=-1)
    candidates = p
    k = 0
    if negatives is not None:
        if negatives.ndim == 2:
            negatives = negatives.unsqueeze(1)
        if negatives.shape[0] != n or negatives.shape[-1] != anchor.shape[-1]:
            raise ValueError(f"negatives must be (N, k, d) with N={n}; got {tuple(negatives.shape)}")
        k = negatives.shape[1]
        # column N + i*k + j is negative j of anchor i
        candidates = torch.cat([p, F.normalize(negatives.reshape(n * k, -1), dim=-1)], dim=0)
    logits = a @ candidates.T / temperature
    if k and hard_negative_weight != 1.0:
        own = torch.zeros_like(logits)
        rows = torch.arange(n, device=logits.device).repeat_interleave(k)
        cols = n + torch.arange(n * k, device=logits.device)
        own[rows, cols] = math.log(hard_negative_weight)
        logits = logits + own
    labels = torch.arange(n, device=logits.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(p @ a.T / temperature, labels)) / 2
    return loss
