"""Soft-target InfoNCE: graded similarity scores (human, LLM or teacher) as the target distribution.

Cheng et al., "Improving Contrastive Learning of Sentence Embeddings from AI Feedback" (CLAIF),
2023; "Generalized Contrastive Learning for Multi-Modal Retrieval and Ranking" (GCL), 2024.

    loss_i = - sum_j softmax(target_i / tau_t)_j * log softmax(s(h_i, c_j) / tau)_j

over each anchor's candidates c_j (the ``infonce`` layout). With one-hot targets (tau_t -> 0 and the
own positive scored highest) this is InfoNCE. This is the cross-entropy H(q, p) = KL(q || p) + H(q);
it differs from the KL only by a constant in the student, so the gradients are the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import check_positive, cosine_matrix


def soft_infonce(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    target_scores: Tensor,
    temperature: float = 0.05,
    target_temperature: float = 0.05,
) -> Tensor:
    """Mean cross-entropy between softmax(target_scores / tau_t) and softmax(cosine / tau) per anchor (CLAIF, GCL).

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``.
        target_scores: (N, C) graded scores of every anchor/candidate pair in the ``infonce`` column
            layout (C = N + N*k). ``-inf`` removes a candidate from the target (not from the student's
            softmax); each row needs at least one finite score. No gradient flows through it.
        temperature: tau of the student logits. target_temperature: tau_t of the targets.
    """
    check_positive("soft_infonce", "temperature", temperature)
    check_positive("soft_infonce", "target_temperature", target_temperature)
    logits = cosine_matrix("soft_infonce", anchor, positive, negatives) / temperature
    if target_scores.shape != logits.shape:
        raise ValueError(f"soft_infonce: target_scores must be (N, C) = {tuple(logits.shape)} in the infonce "
                         f"column layout; got {tuple(target_scores.shape)}")
    target = target_scores.detach().to(device=logits.device, dtype=logits.dtype)
    if torch.isnan(target).any() or (target == float("inf")).any():
        raise ValueError("soft_infonce: target_scores must not contain NaN or +inf")
    if not torch.isfinite(target).any(dim=1).all():
        raise ValueError("soft_infonce: every row of target_scores needs at least one finite score")
    q = torch.softmax(target / target_temperature, dim=1)
    log_p = torch.log_softmax(logits, dim=1)
    return -(q * log_p).sum(dim=1).mean()
