"""Per-batch loss inputs the training pipeline supplies, and the adapter that feeds them to a loss.

Some losses take more than embeddings: gold scores (``cosent``, ``angle``), teacher outputs
(``mse_distill``, ``listwise_distill``, ``soft_infonce``), a reference encoder's similarities
(``dclr``), a false-negative mask (``bidirectional_margin``). The embed function puts *per-row*
tensors into ``Embedded.extras`` (``scores`` (N,), ``teacher_anchor`` / ``teacher_positive`` (N, d_t),
``teacher_negatives`` (N, k, d_t), ``extra_positives`` (N, V-2, d)); :func:`with_inputs` turns them
into the loss's own keyword arguments at loss time, so a batch gathered or cached by a negatives
source still gets inputs in the right layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._common import cosine_matrix

# loss keyword -> where the pipeline takes it from
SUPPLIED_INPUTS: dict[str, str] = {
    "scores": "data",  # cosent, angle: the example's gold score (data.kind 'scored')
    "teacher": "teacher",  # mse_distill: teacher embedding of the anchor text
    "teacher_scores": "teacher",  # listwise_distill: teacher cosine of anchor vs own positive + negatives
    "target_scores": "teacher",  # soft_infonce: teacher cosine matrix in the infonce layout
    "reference_sim": "teacher",  # dclr: the frozen reference (teacher) cosine matrix, infonce layout
    "false_negative_mask": "teacher",  # bidirectional_margin: teacher cosine > teacher.false_negative_threshold
    "generator": "pipeline",  # dclr num_noise: a torch.Generator seeded per batch
}
"""Loss keyword arguments the pipeline can fill in, and their source ('data', 'teacher' or 'pipeline')."""

UNSUPPORTED_LOSSES: dict[str, str] = {
    "non_contrastive": "it needs an EMA target network and a trainable predictor head updated after every "
                       "optimizer step (BYOL/UNSEE), which the trainer does not maintain; call "
                       "contrastkit.losses.non_contrastive directly from your own loop",
}
"""Losses the config cannot run, with the reason."""

# Losses that may see poly-view batches (an anchor with several positives): pairwise losses over
# in-batch negatives that take no per-batch input.
POLY_VIEW_LOSSES = ("infonce", "debiased", "hard_negative_weighting", "energy_hinge", "align_uniform",
                    "adaptive_temperature")


def required_inputs(loss_name: str, params: dict[str, Any]) -> dict[str, str]:
    """The pipeline inputs ``loss_name`` will be given (keyword -> source) with these parameters."""
    need: dict[str, str] = {}
    if loss_name == "cosent" or (loss_name == "angle" and (params.get("cosine_weight", 0.0) or
                                                            params.get("angle_weight", 0.02))):
        need["scores"] = "data"
    elif loss_name == "mse_distill":
        need["teacher"] = "teacher"
    elif loss_name == "listwise_distill":
        need["teacher_scores"] = "teacher"
    elif loss_name in ("soft_infonce", "graded"):
        need["target_scores"] = "teacher"
    elif loss_name == "dclr":
        need["reference_sim"] = "teacher"
        if params.get("num_noise"):
            need["generator"] = "pipeline"
    elif loss_name == "bidirectional_margin":
        need["false_negative_mask"] = "teacher"
    return need


def _teacher_matrix(extras: dict[str, Tensor]) -> Tensor:
    return cosine_matrix("teacher", extras["teacher_anchor"], extras["teacher_positive"],
                         extras.get("teacher_negatives"))


def _teacher_listwise(extras: dict[str, Tensor]) -> Tensor:
    a = torch.nn.functional.normalize(extras["teacher_anchor"], dim=-1)
    cands = extras["teacher_positive"].unsqueeze(1)
    if "teacher_negatives" in extras:
        cands = torch.cat([cands, extras["teacher_negatives"]], dim=1)
    return torch.einsum("nd,nkd->nk", a, torch.nn.functional.normalize(cands, dim=-1))


def with_inputs(loss_fn: Callable[..., Tensor], loss_name: str, params: dict[str, Any] | None = None, *,
                false_negative_threshold: float = 0.9) -> Callable[..., Tensor]:
    """Wrap ``loss_fn`` so it accepts the pipeline's per-row extras and gets its own keyword inputs.

    With ``extra_positives`` (poly-view, Shidani et al., 2024) the loss is the mean of ``loss_fn``
    over every pair of the V views (view i as anchor, view j > i as positive): the Poly-View paper's
    multi-crop objective, which uses all V(V-1)/2 related pairs instead of one.
    """
    need = required_inputs(loss_name, params or {})

    def loss(anchor: Tensor, positive: Tensor, negatives: Tensor | None = None, **extras: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {}
        for key in need:
            if key == "scores":
                kwargs["scores"] = extras["scores"]
            elif key == "teacher":
                kwargs["teacher"] = extras["teacher_anchor"]
            elif key == "teacher_scores":
                kwargs["teacher_scores"] = _teacher_listwise(extras)
            elif key in ("target_scores", "reference_sim"):
                kwargs[key] = _teacher_matrix(extras)
            elif key == "false_negative_mask":
                kwargs[key] = _teacher_matrix(extras) > false_negative_threshold
            elif key == "generator":
                device = anchor.device
                kwargs[key] = torch.Generator(device=device).manual_seed(
                    int(torch.randint(0, 2**31 - 1, (1,)).item()))
        more = extras.get("extra_positives")
        if more is None:
            return loss_fn(anchor, positive, negatives, **kwargs)
        views = [anchor, positive, *more.unbind(dim=1)]
        terms = [loss_fn(views[i], views[j], negatives, **kwargs)
                 for i in range(len(views)) for j in range(i + 1, len(views))]
        return torch.stack(terms).mean()

    loss.__name__ = f"{loss_name}_with_inputs"
    return loss


__all__ = ["POLY_VIEW_LOSSES", "SUPPLIED_INPUTS", "UNSUPPORTED_LOSSES", "required_inputs", "with_inputs"]
