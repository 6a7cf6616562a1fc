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

from ._common import candidates, check_positive


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
    check_positive("infonce", "temperature", temperature)
    check_positive("infonce", "hard_negative_weight", hard_negative_weight)
    a, cands = candidates("infonce", anchor, positive, negatives)
    n = a.shape[0]
    k = (cands.shape[0] - n) // n  # hard negatives per anchor
    p = cands[:n]
    logits = a @ cands.T / temperature
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
