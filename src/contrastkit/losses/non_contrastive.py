"""Non-contrastive (BYOL-style) objective: predict a stop-gradient target view, no negatives.

"UNSEE: Unsupervised Non-contrastive Sentence Embeddings", 2024 (after Grill et al., "Bootstrap
Your Own Latent", NeurIPS 2020).

    loss = mean_i || q_i/||q_i|| - sg(z_i)/||sg(z_i)|| ||^2 = mean_i (2 - 2 cos(q_i, sg(z_i)))

``q`` is the online network's prediction, ``z`` the target network's (EMA copy) projection of the
other view; ``sg`` is stop-gradient, applied here. The EMA update of the target network and the
symmetrised (view-swapped) loss are the caller's job. Collapse is prevented by the asymmetry
(predictor + stop-gradient + EMA target), not by this function.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._common import check_pair, no_negatives


def non_contrastive(anchor: Tensor, positive: Tensor, negatives: Tensor | None = None) -> Tensor:
    """Mean normalised MSE ``2 - 2 cos(prediction, stop_grad(target))`` (BYOL / UNSEE).

    Inputs:
        anchor: (N, d) online predictions q. positive: (N, d) target projections z (detached here).
        negatives: must be None.

    A zero vector has cosine 0 with everything (loss 2 for that row).
    """
    check_pair("non_contrastive", anchor, positive)
    no_negatives("non_contrastive", negatives)
    cos = (F.normalize(anchor, dim=-1) * F.normalize(positive.detach(), dim=-1)).sum(dim=-1)
    return (2.0 - 2.0 * cos).mean()
