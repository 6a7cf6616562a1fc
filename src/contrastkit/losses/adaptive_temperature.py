"""MACL: InfoNCE whose temperature follows the batch's positive alignment, with gradient reweighting.

Huang, Chen, Wen, Zhang, Li, Wang and Chen, "Model-Aware Contrastive Learning: Towards Escaping the
Dilemmas", ICML 2023 (formula as in the authors' code and lightly's ``MACLLoss``).

    A       = mean_i s(h_i, h_i+)                    (alignment magnitude; no gradient)
    tau_eff = tau_0 * (1 + alpha * (A - A_0))
    P_i     = softmax_j( s(h_i, c_j) / tau_eff )_i   (probability of the own positive)
    loss    = mean_i  -V_i * log P_i,   V_i = sg(1 / (1 - P_i))   (gradient reweighting)

A well-aligned batch (large A) gets a higher temperature, i.e. a softer penalty on hard negatives.
``V`` cancels InfoNCE's gradient-reduction factor (1 - P_i): the gradient of each row equals the
gradient of ``x_i = log sum_{j != i} e^{l_ij} - l_ii``. This is computed stably: the row's value is
``softplus(x) * (1 + e^{-x})`` (-> 1 as P_i -> 1) and its gradient is that of ``x``, identical to
``-sg(V) log P`` wherever the latter is finite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import check_nonnegative, check_positive, cosine_matrix, split_positive


def _reweighted_value(x: Tensor) -> Tensor:
    """``softplus(x) * (1 + exp(-x))`` for any x, without overflow (1 at x = -inf)."""
    u = torch.exp(torch.clamp(x, max=0.0))  # e^x for x <= 0, 1 otherwise
    small = torch.where(u > 0, torch.log1p(u) / torch.where(u > 0, u, torch.ones_like(u)), torch.ones_like(u))
    neg_branch = (1.0 + u) * small  # x <= 0: log1p(e^x) * (1 + e^x) / e^x
    pos_branch = F.softplus(x) * (1.0 + torch.exp(-torch.clamp(x, min=0.0)))
    return torch.where(x > 0, pos_branch, neg_branch)


def adaptive_temperature(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    alpha: float = 0.5,
    a0: float = 0.0,
    reweight: bool = True,
) -> Tensor:
    """Mean MACL loss (Huang et al. 2023): InfoNCE at ``tau_eff = tau * (1 + alpha * (A - a0))``.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``.
        temperature: tau_0 > 0, the base temperature.
        alpha: >= 0, how strongly the temperature follows the alignment (reference default 0.5).
        a0: alignment threshold A_0 (reference default 0).
        reweight: apply MACL's gradient reweighting ``V = 1/(1 - P)``; False is plain InfoNCE at tau_eff.

    A = mean cosine of the positive pairs, detached. ValueError if tau_eff <= 0 (only possible when
    alpha * (a0 - A) >= 1). A batch of 1 without negatives gives 1 with reweighting (the limit as
    P -> 1) and 0 without, both with zero gradient.
    """
    check_positive("adaptive_temperature", "temperature", temperature)
    check_nonnegative("adaptive_temperature", "alpha", alpha)
    if not (isinstance(a0, (int, float)) and math.isfinite(a0)):
        raise ConfigError(f"adaptive_temperature: a0 must be a finite number, got {a0!r}")
    cos = cosine_matrix("adaptive_temperature", anchor, positive, negatives)
    pos, neg = split_positive(cos)
    align = pos.detach().mean()
    factor = 1.0 + alpha * (align - a0)
    if factor.item() <= 0:
        raise ValueError(f"adaptive_temperature: tau_eff = temperature * (1 + alpha * (A - a0)) is not positive "
                         f"(A = {align.item():.4f}, alpha = {alpha}, a0 = {a0}); lower alpha or a0")
    tau_eff = temperature * factor
    if neg.shape[1] == 0:
        base = 1.0 if reweight else 0.0
        return base + 0.0 * pos.sum()
    x = torch.logsumexp(neg / tau_eff, dim=1) - pos / tau_eff  # log-odds of "not the positive"
    if not reweight:
        return F.softplus(x).mean()  # -log P
    with torch.no_grad():
        value = _reweighted_value(x)
    return (value + x - x.detach()).mean()
