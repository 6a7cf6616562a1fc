"""SimCTG: MLE plus a token-level contrastive margin loss, as pure functions over tensors.

Su et al., 2022, "A Contrastive Framework for Neural Text Generation" (NeurIPS). A causal LM's token
representations are anisotropic (any two tokens of a text have very similar hidden states), which the paper ties
to degeneration; SimCTG adds to the LM loss a margin loss that pushes apart the representations of the different
tokens of one sequence::

    L_CL = 1 / (|x| (|x| - 1)) * sum_i sum_{j != i} max(0, rho - s(h_i, h_i) + s(h_i, h_j))

with ``s`` the cosine similarity of the last layer's hidden states and ``rho`` the margin (0.5 in the paper).
Over a batch, the sum runs over every pair of real (non-padding) tokens of the same sequence and is divided by
the number of such pairs, as the authors' code (``compute_contrastive_loss``) does; for one sequence that is the
formula above. The training loss is ``L_MLE + L_CL``.

Not in :data:`contrastkit.losses.LOSSES`: that registry holds embedding losses over (anchor, positive) pairs for
``contrastkit train``, while this is a language-modelling objective over tokens (like :mod:`.mntp`); its stage
is ``contrastkit lm simctg`` (:mod:`contrastkit.lm.simctg`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100


def token_contrastive(hidden: Tensor, attention_mask: Tensor | None = None, *, margin: float = 0.5) -> Tensor:
    """SimCTG's token-level contrastive loss ``L_CL`` of hidden states ``(B, T, d)``; ``attention_mask`` ``(B, T)``
    marks the real tokens (padding never forms a pair). A batch without any pair gives a zero that keeps the
    graph."""
    if hidden.dim() != 3:
        raise ValueError(f"token_contrastive: hidden must be (B, T, d), got {tuple(hidden.shape)}")
    h = F.normalize(hidden.float(), dim=-1)
    sim = h @ h.transpose(1, 2)  # (B, T, T): s(h_i, h_j)
    gold = sim.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # s(h_i, h_i), 1 up to rounding
    loss = (margin - gold + sim).clamp(min=0)
    real = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device) if attention_mask is None \
        else attention_mask.bool()
    eye = torch.eye(hidden.shape[1], dtype=torch.bool, device=hidden.device)
    pairs = real[:, :, None] & real[:, None, :] & ~eye
    count = pairs.sum()
    if int(count) == 0:
        return hidden.sum() * 0.0
    return (loss * pairs).sum() / count


def mle(logits: Tensor, labels: Tensor) -> Tensor:
    """The causal LM loss: mean cross-entropy of each token predicted from the previous position (``labels``
    ``(B, T)``, ``IGNORE`` where nothing is predicted, e.g. padding)."""
    targets = labels[:, 1:]
    return F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE)


def simctg(logits: Tensor, hidden: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None, *,
           margin: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """The SimCTG objective of one batch: ``(L_MLE + L_CL, L_MLE, L_CL)``.

    ``logits`` ``(B, T, V)`` and ``hidden`` ``(B, T, d)`` (last layer) of the causal LM over ``input_ids``
    ``(B, T)``; ``attention_mask`` marks the real tokens (padding is neither predicted nor contrasted).
    """
    labels = input_ids if attention_mask is None else input_ids.masked_fill(attention_mask == 0, IGNORE)
    lm = mle(logits, labels)
    cl = token_contrastive(hidden, attention_mask, margin=margin)
    return lm + cl, lm, cl


__all__ = ["IGNORE", "mle", "simctg", "token_contrastive"]
