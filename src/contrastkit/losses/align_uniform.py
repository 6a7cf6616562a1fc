"""Alignment and uniformity on the hypersphere: metrics and their weighted sum as a loss.

Wang and Isola, "Understanding Contrastive Representation Learning through Alignment and
Uniformity on the Hypersphere", ICML 2020.

    L_align   = E_{(x,y) positive} ||f(x) - f(y)||_2^alpha
    L_uniform = log E_{x,y i.i.d.} exp(-t ||f(x) - f(y)||_2^2)

with f L2-normalised. The expectation in L_uniform is over distinct pairs i < j of the batch (the
reference code's ``torch.pdist``). Lower is better for both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_nonnegative, check_pair, check_positive, no_negatives


def _safe_pow(sq: Tensor, half_alpha: float) -> Tensor:
    """``sq ** half_alpha`` for sq >= 0 with a finite (zero) gradient where sq == 0."""
    if half_alpha == 1.0:
        return sq
    pos = sq > 0
    safe = torch.where(pos, sq, torch.ones_like(sq))
    return torch.where(pos, safe.pow(half_alpha), torch.zeros_like(sq))


def alignment(x: Tensor, y: Tensor, *, alpha: float = 2.0) -> Tensor:
    """Alignment metric ``mean_i ||x_i - y_i||^alpha`` of L2-normalised rows (Wang & Isola 2020).

    Inputs:
        x, y: (N, d) embeddings; row i of x and row i of y are a positive pair (normalised here).
        alpha: exponent > 0 (paper default 2).
    """
    check_pair("alignment", x, y)
    check_positive("alignment", "alpha", alpha)
    diff = F.normalize(x, dim=-1) - F.normalize(y, dim=-1)
    return _safe_pow(diff.pow(2).sum(dim=-1), alpha / 2).mean()


def uniformity(x: Tensor, *, t: float = 2.0) -> Tensor:
    """Uniformity metric ``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` of L2-normalised rows (Wang & Isola 2020).

    Inputs:
        x: (N, d) embeddings with N >= 2 (normalised here).
        t: scale > 0 (paper default 2).
    """
    if x.ndim != 2:
        raise ValueError(f"uniformity: x must be (N, d); got {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"uniformity: x needs at least 2 rows (pairs of points); got N={x.shape[0]}")
    check_positive("uniformity", "t", t)
    h = F.normalize(x, dim=-1)
    n = h.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=h.device)
    sq = (h[i] - h[j]).pow(2).sum(dim=-1)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.shape[0])


def align_uniform(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    alpha: float = 2.0,
    t: float = 2.0,
    align_weight: float = 1.0,
    uniform_weight: float = 1.0,
) -> Tensor:
    """``align_weight * L_align + uniform_weight * (L_uniform(anchor) + L_uniform(positive)) / 2`` (Wang & Isola 2020).

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: must be None (the uniformity term needs no explicit negatives).
        alpha: alignment exponent > 0. t: uniformity scale > 0.
        align_weight, uniform_weight: weights >= 0 (the reference code's ``align_w``, ``unif_w``).

    The uniformity term needs N >= 2 (ValueError otherwise) unless ``uniform_weight == 0``.
    """
    check_pair("align_uniform", anchor, positive)
    no_negatives("align_uniform", negatives)
    check_nonnegative("align_uniform", "align_weight", align_weight)
    check_nonnegative("align_uniform", "uniform_weight", uniform_weight)
    check_positive("align_uniform", "t", t)
    loss = align_weight * alignment(anchor, positive, alpha=alpha)
    if uniform_weight:
        if anchor.shape[0] < 2:
            raise ValueError("align_uniform: the uniformity term needs a batch of N >= 2 "
                             f"(got N={anchor.shape[0]}); set uniform_weight=0 to use alignment only")
        loss = loss + uniform_weight * (uniformity(anchor, t=t) + uniformity(positive, t=t)) / 2
    return loss
