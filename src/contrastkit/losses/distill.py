"""Distillation losses: listwise KL to a teacher's candidate scores, and MSE to teacher embeddings.

Listwise: Tamber et al., "Conventional Contrastive Learning Often Falls Short:
Improving Dense Retrieval with Cross-Encoder Listwise Distillation and Synthetic Data", 2025.

    loss = mean_i KL( softmax(t_i / tau_t) || softmax(cos(q_i, c_ij) / tau) )

over each query's own candidate list c_i = [positive_i, negatives_i...].

MSE: Reimers and Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation", EMNLP 2020 (sentence-transformers' MSELoss): the student reproduces the teacher's
embeddings, ``mean (student - teacher)^2`` over every element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_pair, check_positive, no_negatives, own_negatives


def listwise_distill(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    teacher_scores: Tensor,
    temperature: float = 0.05,
    teacher_temperature: float = 1.0,
) -> Tensor:
    """Mean KL(teacher || student) over each query's candidate list (listwise distillation).

    Inputs:
        anchor: (N, d) query embeddings. positive: (N, d); candidate 0 of each query.
        negatives: optional (N, d) or (N, k, d); candidates 1..k of each query (only its own).
        teacher_scores: (N, 1+k) finite teacher scores (e.g. cross-encoder logits) of the same
            candidates, in the same order; no gradient flows through them.
        temperature: tau of the student (cosine / tau). teacher_temperature: tau_t of the teacher.

    With a single candidate per query both distributions are [1] and the loss is 0.
    """
    check_pair("listwise_distill", anchor, positive)
    check_positive("listwise_distill", "temperature", temperature)
    check_positive("listwise_distill", "teacher_temperature", teacher_temperature)
    n, d = anchor.shape
    cands = positive.unsqueeze(1)
    if negatives is not None:
        cands = torch.cat([cands, own_negatives("listwise_distill", negatives, n, d)], dim=1)  # (N, 1+k, d)
    if teacher_scores.shape != cands.shape[:2]:
        raise ValueError(f"listwise_distill: teacher_scores must be (N, 1+k) = {tuple(cands.shape[:2])}; "
                         f"got {tuple(teacher_scores.shape)}")
    if not torch.isfinite(teacher_scores).all():
        raise ValueError("listwise_distill: teacher_scores must be finite")
    student = torch.einsum("nd,nkd->nk", F.normalize(anchor, dim=-1), F.normalize(cands, dim=-1)) / temperature
    log_p = torch.log_softmax(student, dim=1)
    log_q = torch.log_softmax(teacher_scores.detach().to(student.dtype) / teacher_temperature, dim=1)
    return (log_q.exp() * (log_q - log_p)).sum(dim=1).mean()


def mse_distill(
    anchor: Tensor,
    positive: Tensor | None = None,
    negatives: Tensor | None = None,
    *,
    teacher: Tensor,
    teacher_positive: Tensor | None = None,
    normalize: bool = False,
) -> Tensor:
    """Mean squared error between student embeddings and teacher embeddings (Reimers & Gurevych 2020).

    Inputs:
        anchor: (N, d) student embeddings. teacher: (N, d) their targets (no gradient flows).
        positive: optional (N, d) more student embeddings, e.g. translations of the anchors.
        teacher_positive: targets of ``positive``; None uses ``teacher`` (multilingual distillation:
            the translation should land on the teacher's embedding of the source sentence).
        negatives: must be None.
        normalize: L2-normalise student and teacher rows first.

    The mean is over every element of every (student, target) pair given.
    """
    no_negatives("mse_distill", negatives)
    students, targets = [anchor], [teacher]
    if positive is not None:
        students.append(positive)
        targets.append(teacher if teacher_positive is None else teacher_positive)
    elif teacher_positive is not None:
        raise ValueError("mse_distill: teacher_positive given without positive")
    for s, t in zip(students, targets):
        if s.ndim != 2 or t.shape != s.shape or s.shape[0] == 0:
            raise ValueError(f"mse_distill: student and teacher embeddings must both be (N, d) with the same "
                             f"shape (project the student first if the dimensions differ); got "
                             f"{tuple(s.shape)} and {tuple(t.shape)}")
    student = torch.cat(students)
    target = torch.cat(targets).detach().to(student.dtype)
    if normalize:
        student, target = F.normalize(student, dim=-1), F.normalize(target, dim=-1)
    if not torch.isfinite(target).all():
        raise ValueError("mse_distill: teacher embeddings must be finite")
    return (student - target).pow(2).mean()
