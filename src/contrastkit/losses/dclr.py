"""DCLR: InfoNCE with false negatives weighted out and Gaussian noise vectors as extra negatives.

Zhou, Zhang, Zhao and Wen, "Debiased Contrastive Learning of Unsupervised Sentence
Representations", ACL 2022.

    loss_i = -log( e^{s(h_i,h_i+)/tau} / sum_{h- in {h+} u {h-} u {noise}} alpha(h_i,h-) e^{s(h_i,h-)/tau} )

with ``alpha = 0`` for a negative whose similarity to the anchor under a frozen reference encoder
(the paper uses an unsupervised SimCSE) exceeds ``phi`` and ``alpha = 1`` otherwise; the anchor's own
positive always has weight 1, and the noise negatives always have weight 1. ``alpha = 0`` is applied
as a ``-inf`` logit, i.e. the candidate leaves the denominator. In the paper the noise vectors are
drawn from N(0, sigma^2) and then made harder by a few gradient-ascent steps; that optimisation is
the caller's job (pass the optimised vectors as ``noise``). Because all embeddings are
L2-normalised, the noise scale sigma has no effect on the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import candidates, check_positive


def dclr(
    anchor: Tensor,
    positive: Tensor,
    negatives: Tensor | None = None,
    *,
    temperature: float = 0.05,
    reference_sim: Tensor | None = None,
    phi: float = 0.9,
    noise: Tensor | None = None,
    num_noise: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean DCLR loss (Zhou et al. 2022) over a batch of anchors.

    Inputs:
        anchor: (N, d) embeddings. positive: (N, d); row i is anchor i's positive.
        negatives: optional (N, d) or (N, k, d) hard negatives, laid out as in ``infonce``.
        temperature: tau; logits are cosine / tau.
        reference_sim: optional (N, C) similarities of the same anchor/candidate pairs under a frozen
            reference encoder, in the ``infonce`` column layout (C = N + N*k); no gradient flows
            through it. None keeps every negative.
        phi: negatives with ``reference_sim > phi`` get weight 0 (likely false negatives).
        noise: optional (m, d) noise vectors, extra negatives for every anchor.
        num_noise: instead of ``noise``, draw this many standard Gaussian vectors from ``generator``.
        generator: the torch.Generator to draw ``num_noise`` vectors from (required with num_noise,
            so the function stays deterministic).

    An anchor whose negatives are all weighted out (or a batch of 1 without negatives) contributes 0.
    """
    check_positive("dclr", "temperature", temperature)
    if not (isinstance(phi, (int, float)) and math.isfinite(phi)):
        raise ConfigError(f"dclr: phi must be a finite number, got {phi!r}")
    if not isinstance(num_noise, int) or num_noise < 0:
        raise ConfigError(f"dclr: num_noise must be an int >= 0, got {num_noise!r}")
    if noise is not None and num_noise:
        raise ConfigError("dclr: give either noise= or num_noise= (with generator=), not both")
    a, cands = candidates("dclr", anchor, positive, negatives)
    n, d = anchor.shape
    logits = a @ cands.T / temperature
    if reference_sim is not None:
        if reference_sim.shape != logits.shape:
            raise ValueError(f"dclr: reference_sim must be (N, C) = {tuple(logits.shape)} in the infonce column "
                             f"layout; got {tuple(reference_sim.shape)}")
        drop = reference_sim.detach().to(device=logits.device) > phi
        drop[torch.arange(n, device=logits.device), torch.arange(n, device=logits.device)] = False
        logits = logits.masked_fill(drop, float("-inf"))
    if num_noise:
        if generator is None:
            raise ConfigError("dclr: num_noise > 0 needs generator= (a torch.Generator) or pass noise= directly")
        noise = torch.randn(num_noise, d, generator=generator, dtype=anchor.dtype, device=generator.device)
    if noise is not None:
        if noise.ndim != 2 or noise.shape[1] != d:
            raise ValueError(f"dclr: noise must be (m, d) with d={d}; got {tuple(noise.shape)}")
        noise = noise.to(device=logits.device, dtype=logits.dtype)
        logits = torch.cat([logits, a @ F.normalize(noise, dim=-1).T / temperature], dim=1)
    labels = torch.arange(n, device=logits.device)
    return F.cross_entropy(logits, labels)
