"""Ranking losses over scored pairs: CoSENT, and AnglE (CoSENT on angle differences + InfoNCE).

CoSENT: Su Jianlin (2022), "CoSENT: a more efficient sentence vector scheme than Sentence-BERT";
Huang et al., "CoSENT: Consistent Sentence Embedding via Similarity Ranking", IEEE/ACM TASLP 2024.

    loss = log(1 + sum_{score_i > score_j} exp(lambda * (s_j - s_i)))

over all ordered pairs of scored pairs in the batch, ``s_i = cos(u_i, v_i)`` and ``lambda = 1/tau``
(``tau = 0.05`` is the usual scale 20).

AnglE: Li and Li, "AnglE-optimized Text Embeddings" (arXiv 2309.12871, ACL 2024). Each embedding
is split into real and imaginary halves ``z = a + ib``; the angle term is the CoSENT objective on
the reference implementation's ``|sum(re) + sum(im)|`` of the normalised complex quotient
``(z_u / z_v) * (|z_v| / |z_u|)`` -- which after L2 normalisation equals
``|cos(u, v) + sum_k (b_u,k a_v,k - a_u,k b_v,k)|`` (sentence-transformers' ``pairwise_angle_sim``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_nonnegative, check_pair, check_positive, cosine_matrix, no_negatives


def _scores(loss: str, scores: Tensor | None, n: int) -> Tensor:
    if scores is None:
        raise ValueError(f"{loss}: scores= (one similarity label per pair, shape (N,)) is required")
    if scores.numel() != n:
        raise ValueError(f"{loss}: scores must hold one label per pair, N={n}; got shape {tuple(scores.shape)}")
    scores = scores.reshape(n)
    if scores.dtype == torch.bool:
        scores = scores.to(torch.int64)
    if scores.is_floating_point() and not torch.isfinite(scores).all():
        raise ValueError(f"{loss}: scores must be finite")
    return scores


def _pair_cos(u: Tensor, v: Tensor) -> Tensor:
    """Row-wise cosine similarity (zero vectors give 0)."""
    return (F.normalize(u, dim=-1) * F.normalize(v, dim=-1)).sum(dim=-1)


def _rank_loss(sim: Tensor, scores: Tensor, scale: float) -> Tensor:
    """``log(1 + sum_{scores_i > scores_j} exp(scale * (sim_j - sim_i)))``; 0 when no pair is ordered."""
    scaled = sim * scale
    diff = scaled[None, :] - scaled[:, None]  # diff[i, j] = s_j - s_i
    ordered = scores[:, None] > scores[None, :]
    terms = torch.cat([scaled.new_zeros(1), diff[ordered]])
    return torch.logsumexp(terms, dim=0)


def angle_similarity(x: Tensor, y: Tensor) -> Tensor:
    """Row-wise AnglE similarity ``|cos(x, y) + sin(x, y)|`` of L2-normalised rows (Li & Li 2023).

    Inputs:
        x, y: (N, d) embeddings; dimension k pairs with k + d/2 as real and imaginary parts (an odd d
            is padded with one zero column).
    """
    if x.shape[-1] % 2:
        x, y = F.pad(x, (0, 1)), F.pad(y, (0, 1))
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    a, b = torch.chunk(x, 2, dim=-1)
    c, d = torch.chunk(y, 2, dim=-1)
    re = (a * c + b * d).sum(dim=-1)
    im = (b * c - a * d).sum(dim=-1)
    return (re + im).abs()


def cosent(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    scores: Tensor,
    temperature: float = 0.05,
) -> Tensor:
    """CoSENT ranking loss over N scored pairs (Su 2022).

    Inputs:
        anchor: (N, d) first texts. positive: (N, d) second texts; row i of each form pair i.
        negatives: must be None.
        scores: (N,) gold similarity of each pair (any scale; only the order matters).
        temperature: tau; lambda = 1/tau (0.05 = the usual scale 20).

    With no two pairs ordered (N = 1 or equal scores) the loss is log(1) = 0.
    """
    check_pair("cosent", anchor, positive)
    no_negatives("cosent", negatives)
    check_positive("cosent", "temperature", temperature)
    labels = _scores("cosent", scores, anchor.shape[0])
    sim = _pair_cos(anchor, positive)
    return _rank_loss(sim, labels, 1.0 / temperature)


def angle(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    scores: Tensor | None = None,
    temperature: float = 0.05,
    cosine_weight: float = 0.0,
    ibn_weight: float = 1.0,
    angle_weight: float = 0.02,
    cosine_temperature: float = 0.05,
    angle_temperature: float = 0.05,
    positive_mask: Tensor | None = None,
) -> Tensor:
    """AnglE loss (Li & Li 2023): ``cosine_weight*CoSENT + ibn_weight*InfoNCE + angle_weight*angle``.

    Inputs:
        anchor: (N, d) first texts. positive: (N, d) second texts; row i of each form pair i.
        negatives: optional (N, d) or (N, k, d) hard negatives for the InfoNCE term (``infonce`` layout).
        scores: (N,) gold similarity per pair; required when cosine_weight or angle_weight > 0.
        temperature: tau of the in-batch InfoNCE term (reference ``ibn_tau`` 20 = tau 0.05).
        cosine_weight, ibn_weight, angle_weight: weights >= 0 (reference defaults 0, 1, 0.02).
        cosine_temperature, angle_temperature: 1/scale of the CoSENT and angle terms (reference 20).
        positive_mask: optional (N,) bool; only these pairs are InfoNCE rows (e.g. ``scores == 1`` for
            binary labels, as the reference's in-batch term); None uses every pair.

    The InfoNCE term is the reference's ``contrastive_with_negative_loss`` (= ``infonce``); rows are
    averaged over the selected pairs, and it is 0 when none is selected.
    """
    check_pair("angle", anchor, positive)
    for name, value in (("temperature", temperature), ("cosine_temperature", cosine_temperature),
                        ("angle_temperature", angle_temperature)):
        check_positive("angle", name, value)
    for name, value in (("cosine_weight", cosine_weight), ("ibn_weight", ibn_weight), ("angle_weight", angle_weight)):
        check_nonnegative("angle", name, value)
    if negatives is not None and not ibn_weight:
        raise ValueError("angle: negatives are only used by the InfoNCE term, but ibn_weight is 0")
    n = anchor.shape[0]
    loss = anchor.new_zeros(()) + 0.0 * anchor.sum()
    if cosine_weight or angle_weight:
        labels = _scores("angle", scores, n)
        if cosine_weight:
            sim = _pair_cos(anchor, positive)
            loss = loss + cosine_weight * _rank_loss(sim, labels, 1.0 / cosine_temperature)
        if angle_weight:
            loss = loss + angle_weight * _rank_loss(angle_similarity(anchor, positive), labels,
                                                    1.0 / angle_temperature)
    if ibn_weight:
        logits = cosine_matrix("angle", anchor, positive, negatives) / temperature
        rows = F.cross_entropy(logits, torch.arange(n, device=logits.device), reduction="none")
        if positive_mask is not None:
            if positive_mask.shape != (n,) or positive_mask.dtype != torch.bool:
                raise ValueError(f"angle: positive_mask must be a bool tensor of shape ({n},); "
                                 f"got {positive_mask.dtype} {tuple(positive_mask.shape)}")
            keep = positive_mask.to(rows.device)
            rows = torch.where(keep, rows, torch.zeros_like(rows)).sum() / keep.sum().clamp_min(1)
        else:
            rows = rows.mean()
        loss = loss + ibn_weight * rows
    return loss
