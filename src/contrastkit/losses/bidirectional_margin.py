"""ClusterNS: InfoNCE plus a bidirectional margin loss (BML) on likely false negatives.

Deng, Wan, Yang, Quan and Wang, "Clustering-Aware Negative Sampling for Unsupervised Sentence
Representation" (ClusterNS), Findings of ACL 2023.

ClusterNS supplies hard negatives (the nearest *other* cluster centroid, passed here as
``negatives``) and flags in-batch false negatives (candidates in the anchor's own cluster, passed
as ``false_negative_mask``). For each flagged candidate c of anchor i, with cosines,

    delta = s(h_i, c) - s(h_i, h_i+)
    BML   = relu(delta + alpha) + relu(-delta - beta)

keeps the false negative's similarity inside ``[s(h_i,h_i+) - beta, s(h_i,h_i+) - alpha]``: it is
pushed away when closer than the positive minus alpha and pulled in when further than the positive
minus beta. The total is ``infonce + weight * mean(BML)`` (mean over all flagged entries), as in the
reference code, where flagged candidates also stay in the InfoNCE denominator. Defaults follow the
release script (``bml_alpha 0.1``, ``bml_beta 0.3``, ``bml_weight 1e-5``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import check_nonnegative, check_positive, cosine_matrix, split_positive
from .infonce import infonce


def bidirectional_margin(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    false_negative_mask: Tensor,
    temperature: float = 0.05,
    alpha: float = 0.1,
    beta: float = 0.3,
    weight: float = 1e-5,
    hard_negative_weight: float = 1.0,
) -> Tensor:
    """InfoNCE plus ClusterNS's bidirectional margin loss on flagged false negatives (Deng et al. 2023).

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives (e.g. cluster centroids), ``infonce`` layout.
        false_negative_mask: (N, C) bool in the ``infonce`` column layout (C = N + N*k); True marks a
            likely false negative of that anchor. The diagonal (each anchor's own positive) is ignored.
        temperature: tau of the InfoNCE term. hard_negative_weight: passed to ``infonce``.
        alpha, beta: margins in cosine units, 0 <= alpha <= beta.
        weight: weight >= 0 of the BML term.

    No flagged entry gives a BML term of 0.
    """
    check_positive("bidirectional_margin", "temperature", temperature)
    check_nonnegative("bidirectional_margin", "weight", weight)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ConfigError(f"bidirectional_margin: {name} must be a finite number, got {value!r}")
    if not 0 <= alpha <= beta:
        raise ConfigError(f"bidirectional_margin: need 0 <= alpha <= beta; got alpha={alpha}, beta={beta}")
    nce = infonce(anchor, positive, negatives, temperature=temperature, hard_negative_weight=hard_negative_weight)
    cos = cosine_matrix("bidirectional_margin", anchor, positive, negatives)
    if false_negative_mask.shape != cos.shape or false_negative_mask.dtype != torch.bool:
        raise ValueError(f"bidirectional_margin: false_negative_mask must be a bool tensor of shape (N, C) = "
                         f"{tuple(cos.shape)} in the infonce layout; got {false_negative_mask.dtype} "
                         f"{tuple(false_negative_mask.shape)}")
    pos, neg = split_positive(cos)
    _, flagged = split_positive(false_negative_mask.to(cos.device))
    if not flagged.any():
        return nce + 0.0 * pos.sum()
    delta = (neg - pos.unsqueeze(1))[flagged]
    bml = torch.relu(delta + alpha) + torch.relu(-delta - beta)
    return nce + weight * bml.mean()
