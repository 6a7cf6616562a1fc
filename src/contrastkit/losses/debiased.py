"""Debiased contrastive loss and hard-negative importance weighting (one estimator family).

Chuang, Robinson, Lin, Torralba and Jegelka, "Debiased Contrastive Learning", NeurIPS 2020.
Robinson, Chuang, Sra and Jegelka, "Contrastive Learning with Hard Negative Samples", ICLR 2021.

Both replace the sum over the N negatives in the InfoNCE denominator by an estimate ``Ng`` of
N times the mean over *true* negatives. With ``pos = e^{s(h,h+)/tau}`` and ``neg_j = e^{s(h,h_j)/tau}``:

    Ng = max( (N * E_q[neg] - tau_plus * N * pos) / (1 - tau_plus),  N * e^{-1/tau} )
    loss = -log( pos / (pos + Ng) )

where ``tau_plus`` is the class prior (probability that a random negative shares the anchor's
class). Chuang et al. take ``E_q`` as the plain mean; Robinson et al. take an importance-weighted
mean with weights ``w_j = e^{beta * s(h,h_j)/tau}`` (their code: ``imp = (beta * neg.log()).exp()``,
so ``beta`` multiplies the temperature-scaled logit; ``beta = 0`` is the plain mean). The lower
clamp is the theoretical minimum of the estimator (cosine >= -1). Everything is evaluated in log
space, so tiny temperatures (1e-4) cannot overflow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import check_nonnegative, check_positive, cosine_matrix, split_positive


def _debiased_terms(pos: Tensor, log_neg_sum: Tensor, n_neg: int, tau_plus: float, temperature: float) -> Tensor:
    """Per-anchor ``-log(pos / (pos + Ng))`` from ``pos`` (a logit) and ``log(N * E_q[neg])``."""
    if n_neg == 0:  # a softmax over one candidate, as infonce: nothing to contrast
        return 0.0 * pos  # zero, still attached to the graph so backward() works
    log_floor = math.log(n_neg) - 1.0 / temperature
    # shift by the largest of the three log-terms so one of them is exactly 1 after exp
    m = torch.maximum(pos, log_neg_sum).clamp_min(log_floor).detach()
    p = torch.exp(pos - m)
    s = torch.exp(log_neg_sum - m)
    floor = torch.exp(log_floor - m)
    ng = torch.maximum((s - tau_plus * n_neg * p) / (1.0 - tau_plus), floor)
    return torch.log(p + ng) - (pos - m)


def _check_tau_plus(loss: str, tau_plus: float) -> None:
    if not (isinstance(tau_plus, (int, float)) and 0.0 <= tau_plus < 1.0):
        raise ConfigError(f"{loss}: tau_plus (class prior) must be in [0, 1), got {tau_plus!r}")


def debiased(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    tau_plus: float = 0.1,
) -> Tensor:
    """Mean debiased contrastive loss (Chuang et al. 2020) over a batch of anchors.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``; every
            candidate other than an anchor's own positive is one of its negatives (N-1 + N*k of them).
        temperature: tau; logits are cosine / tau.
        tau_plus: class prior in [0, 1); 0 gives exactly ``infonce``.

    Estimator: ``Ng = max((sum_j neg_j - tau_plus * N * pos) / (1 - tau_plus), N * e^{-1/tau})``
    (the paper's ``N * g`` with ``M = 1`` positive). A batch of 1 without negatives gives 0.
    """
    check_positive("debiased", "temperature", temperature)
    _check_tau_plus("debiased", tau_plus)
    logits = cosine_matrix("debiased", anchor, positive, negatives) / temperature
    pos, neg = split_positive(logits)
    terms = _debiased_terms(pos, torch.logsumexp(neg, dim=1), neg.shape[1], tau_plus, temperature)
    return terms.mean()


def hard_negative_weighting(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    beta: float = 1.0,
    tau_plus: float = 0.0,
) -> Tensor:
    """Mean hard-negative-weighted contrastive loss (Robinson et al. 2021) over a batch of anchors.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``.
        temperature: tau; logits are cosine / tau.
        beta: concentration >= 0; negative j is weighted by ``exp(beta * s_j / tau)`` (reference code's
            convention; equals ``exp(beta' * s_j)`` with ``beta' = beta / tau``). 0 gives ``debiased``.
        tau_plus: optional debiasing class prior in [0, 1) (0 = no debiasing).

    ``Ng = max((N * sum_j w_j neg_j / sum_j w_j - tau_plus * N * pos) / (1 - tau_plus), N e^{-1/tau})``.
    A batch of 1 without negatives gives 0.
    """
    check_positive("hard_negative_weighting", "temperature", temperature)
    check_nonnegative("hard_negative_weighting", "beta", beta)
    _check_tau_plus("hard_negative_weighting", tau_plus)
    logits = cosine_matrix("hard_negative_weighting", anchor, positive, negatives) / temperature
    pos, neg = split_positive(logits)
    n_neg = neg.shape[1]
    if n_neg == 0:
        return (0.0 * pos).mean()
    # log(N * sum_j w_j e^{l_j} / sum_j w_j) with w_j = e^{beta l_j}
    log_reweighted = (math.log(n_neg) + torch.logsumexp((1.0 + beta) * neg, dim=1)
                      - torch.logsumexp(beta * neg, dim=1))
    return _debiased_terms(pos, log_reweighted, n_neg, tau_plus, temperature).mean()
