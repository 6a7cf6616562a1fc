"""InfoNCE plus PromCSE's energy-based hinge on the hardest negative.

Jiang, Zhang and Wang, "Improved Universal Sentence Embeddings with Prompt-based Contrastive
Learning and Energy-based Learning" (PromCSE), Findings of EMNLP 2022.

    loss = infonce + weight * mean_i max(0, m - (s(h_i,h_i+) - max_j s(h_i,h_j-))) / tau

(METHODS.md's form: the hinge on cosines, scaled by 1/tau). ``max_j`` runs over every candidate of
anchor i except its own positive (in-batch positives and all hard negatives), as in the PromCSE
code. The PromCSE code applies its ``eh_loss_weight`` to the hinge on raw cosines without the 1/tau;
``weight / tau`` here equals that weight, so the released setting (margin 0.2, eh_loss_weight 10,
tau 0.05) is ``margin=0.2, weight=0.5`` at tau 0.05.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import check_nonnegative, check_positive, cosine_matrix, split_positive
from .infonce import infonce


def energy_hinge(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    margin: float = 0.2,
    weight: float = 0.5,
    hard_negative_weight: float = 1.0,
) -> Tensor:
    """InfoNCE plus the energy-based hinge of PromCSE (Jiang et al. 2022), averaged over anchors.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``.
        temperature: tau of the InfoNCE term; the hinge is divided by it too.
        margin: m >= 0, in cosine units.
        weight: lambda >= 0 on the hinge term.
        hard_negative_weight: alpha passed to ``infonce`` (SimCSE's weight on each anchor's own
            hard negatives).

    A batch of 1 without negatives has no negative to rank against: both terms are 0.
    """
    check_positive("energy_hinge", "temperature", temperature)
    check_nonnegative("energy_hinge", "margin", margin)
    check_nonnegative("energy_hinge", "weight", weight)
    nce = infonce(anchor, positive, negatives, temperature=temperature, hard_negative_weight=hard_negative_weight)
    cos = cosine_matrix("energy_hinge", anchor, positive, negatives)
    pos, neg = split_positive(cos)
    if neg.shape[1] == 0:
        return nce + 0.0 * pos.sum()
    hardest = neg.max(dim=1).values
    hinge = torch.relu(margin - (pos - hardest)).mean()
    return nce + weight * hinge / temperature
