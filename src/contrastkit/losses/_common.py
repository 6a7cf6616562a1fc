"""Shared checks and the candidate layout used by the softmax-style losses (private)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError


def check_positive(loss: str, param: str, value: float) -> None:
    """ConfigError unless ``value`` is a finite number > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{loss}: {param} must be a finite number > 0, got {value!r}")


def check_nonnegative(loss: str, param: str, value: float) -> None:
    """ConfigError unless ``value`` is a finite number >= 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{loss}: {param} must be a finite number >= 0, got {value!r}")


def check_pair(loss: str, anchor: Tensor, positive: Tensor) -> None:
    """ValueError unless anchor and positive are both (N, d) with N >= 1."""
    if anchor.ndim != 2 or positive.shape != anchor.shape or anchor.shape[0] == 0:
        raise ValueError(f"{loss}: anchor and positive must both be (N, d) with N >= 1; "
                         f"got {tuple(anchor.shape)} and {tuple(positive.shape)}")


def no_negatives(loss: str, negatives: Tensor | None) -> None:
    """ValueError when a loss that has no use for hard negatives is given some."""
    if negatives is not None:
        raise ValueError(f"{loss}: this loss takes no negatives (got a tensor of shape {tuple(negatives.shape)}); "
                         "pass negatives=None")


def own_negatives(loss: str, negatives: Tensor, n: int, d: int) -> Tensor:
    """Hard negatives as (N, k, d); row i belongs to anchor i."""
    if negatives.ndim == 2:
        negatives = negatives.unsqueeze(1)
    if negatives.ndim != 3 or negatives.shape[0] != n or negatives.shape[-1] != d:
        raise ValueError(f"{loss}: negatives must be (N, d) or (N, k, d) with N={n}, d={d}; "
                         f"got {tuple(negatives.shape)}")
    return negatives


def candidates(loss: str, anchor: Tensor, positive: Tensor, negatives: Tensor | None) -> tuple[Tensor, Tensor]:
    """L2-normalised anchors (N, d) and candidates (C, d) in the ``infonce`` column layout.

    Columns 0..N-1 are the positives (column i is anchor i's positive, the others are in-batch
    negatives); column N + i*k + j is hard negative j of anchor i, a candidate for every anchor.
    """
    check_pair(loss, anchor, positive)
    n, d = anchor.shape
    cands = F.normalize(positive, dim=-1)
    if negatives is not None:
        negs = own_negatives(loss, negatives, n, d)
        cands = torch.cat([cands, F.normalize(negs.reshape(-1, d), dim=-1)], dim=0)
    return F.normalize(anchor, dim=-1), cands


def cosine_matrix(loss: str, anchor: Tensor, positive: Tensor, negatives: Tensor | None) -> Tensor:
    """(N, C) cosine similarities of each anchor with every candidate (``infonce`` layout)."""
    a, cands = candidates(loss, anchor, positive, negatives)
    return a @ cands.T


def split_positive(sim: Tensor) -> tuple[Tensor, Tensor]:
    """Split an (N, C) score matrix into the positives (N,) (the diagonal of the first N columns)
    and the negatives (N, C-1) (every other column, order kept)."""
    n, c = sim.shape
    own = torch.zeros(n, c, dtype=torch.bool, device=sim.device)
    own[torch.arange(n, device=sim.device), torch.arange(n, device=sim.device)] = True
    return sim[own], sim[~own].reshape(n, c - 1)
