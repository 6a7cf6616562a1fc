"""Triplet margin loss.

Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition and
Clustering", CVPR 2015; for sentences, Reimers and Gurevych, "Sentence-BERT", EMNLP 2019.

    loss = mean_{i,j} max(0, m + d(a_i, p_i) - d(a_i, n_ij))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import check_nonnegative, check_pair, own_negatives


def _distance(kind: str, u: Tensor, v: Tensor) -> Tensor:
    """Row-wise distance along the last dimension; broadcasting like ``u - v``."""
    if kind == "cosine":
        return 1.0 - (F.normalize(u, dim=-1) * F.normalize(v, dim=-1)).sum(dim=-1)
    sq = (u - v).pow(2).sum(dim=-1)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def triplet(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    margin: float = 0.5,
    distance: str = "cosine",
) -> Tensor:
    """Mean triplet margin loss over every (anchor, positive, own negative) triple.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: (N, d) or (N, k, d); row i holds anchor i's negatives (required).
        margin: m >= 0, in units of the distance (sentence-transformers uses 5 with "euclidean").
        distance: "cosine" (1 - cosine similarity) or "euclidean" (L2 distance of the raw,
            un-normalised embeddings, as sentence-transformers' TripletLoss).
    """
    check_pair("triplet", anchor, positive)
    check_nonnegative("triplet", "margin", margin)
    if distance not in ("cosine", "euclidean"):
        raise ConfigError(f"triplet: distance must be 'cosine' or 'euclidean', got {distance!r}")
    if negatives is None:
        raise ValueError("triplet: negatives are required ((N, d) or (N, k, d), row i for anchor i)")
    negs = own_negatives("triplet", negatives, *anchor.shape)
    d_pos = _distance(distance, anchor, positive)  # (N,)
    d_neg = _distance(distance, anchor.unsqueeze(1), negs)  # (N, k)
    return torch.relu(margin + d_pos.unsqueeze(1) - d_neg).mean()
