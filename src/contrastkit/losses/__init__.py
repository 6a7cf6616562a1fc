"""Contrastive objectives: pure functions over embeddings, looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..registry import Registry
from .adaptive_temperature import adaptive_temperature
from .align_uniform import align_uniform, alignment, uniformity
from .bidirectional_margin import bidirectional_margin
from .cosent import angle, angle_similarity, cosent
from .dclr import dclr
from .debiased import debiased, hard_negative_weighting
from .distill import listwise_distill, mse_distill
from .energy_hinge import energy_hinge
from .infonce import infonce
from .non_contrastive import non_contrastive
from .soft_infonce import soft_infonce
from .triplet import triplet

LossFn = Callable[..., Tensor]
LOSSES: Registry[LossFn] = Registry("loss")
for _name, _fn in (
    ("infonce", infonce),
    ("debiased", debiased),
    ("hard_negative_weighting", hard_negative_weighting),
    ("dclr", dclr),
    ("energy_hinge", energy_hinge),
    ("align_uniform", align_uniform),
    ("cosent", cosent),
    ("angle", angle),
    ("soft_infonce", soft_infonce),
    ("graded", soft_infonce),  # alias (CLAIF / GCL graded scores)
    ("triplet", triplet),
    ("listwise_distill", listwise_distill),
    ("mse_distill", mse_distill),
    ("bidirectional_margin", bidirectional_margin),
    ("non_contrastive", non_contrastive),
    ("adaptive_temperature", adaptive_temperature),
):
    LOSSES.register(_name)(_fn)
del _name, _fn

__all__ = [
    "LOSSES", "LossFn", "adaptive_temperature", "align_uniform", "alignment", "angle", "angle_similarity",
    "bidirectional_margin", "cosent", "dclr", "debiased", "energy_hinge", "hard_negative_weighting", "infonce",
    "listwise_distill", "mse_distill", "non_contrastive", "soft_infonce", "triplet", "uniformity",
]
