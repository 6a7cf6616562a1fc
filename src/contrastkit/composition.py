"""Which views, losses, loss inputs, samplers and mined negatives can be combined: checked at config load.

Each rule raises ``ValueError`` (reported as a ConfigError naming the keys) for a combination that
would fail mid-run or silently do nothing. The full list is in the README's "Methods" section.
"""

from __future__ import annotations

from typing import Any

from .losses.inputs import POLY_VIEW_LOSSES, required_inputs

NO_NEGATIVE_LOSSES = ("align_uniform", "cosent", "mse_distill")
"""Losses that reject hard-negative columns."""


def _check_views(cfg: Any) -> None:
    views = cfg.views
    custom = views.name != "dropout" or views.num_views > 2
    if custom and cfg.data.kind != "single":
        raise ValueError(f"views.name '{views.name}' (num_views {views.num_views}) makes positives from single "
                         f"texts; data.kind is '{cfg.data.kind}', whose positives come from the data (keep the "
                         "default views, or use data.kind 'single')")
    if views.num_views > 2:
        if cfg.loss.name not in POLY_VIEW_LOSSES:
            raise ValueError(f"views.num_views {views.num_views} (poly-view) averages a pairwise loss over view "
                             f"pairs; loss '{cfg.loss.name}' is not one (use one of: {', '.join(POLY_VIEW_LOSSES)})")
        if cfg.negatives.source != "in_batch":
            raise ValueError("views.num_views > 2 (poly-view) needs negatives.source 'in_batch': the extra views "
                             f"are not carried through '{cfg.negatives.source}'")


def _check_loss_inputs(cfg: Any) -> None:
    loss = cfg.loss.name
    need = required_inputs(loss, cfg.loss.params)
    sources = set(need.values())
    if "data" in sources and cfg.data.kind != "scored":
        raise ValueError(f"loss '{loss}' needs a gold score per pair: set data.kind 'scored' (columns sentence1, "
                         f"sentence2, score); data.kind is '{cfg.data.kind}'")
    if cfg.data.kind == "scored" and "data" not in sources:
        raise ValueError(f"data.kind 'scored' holds gold scores, but loss '{loss}' does not use them and would treat "
                         "every pair as a positive (use cosent or angle)")
    if "teacher" in sources and cfg.teacher is None:
        what = "a frozen reference encoder's similarities" if loss == "dclr" else "teacher outputs"
        raise ValueError(f"loss '{loss}' needs {what} ({', '.join(need)}): set teacher.model")
    if "teacher" in sources and cfg.negatives.source == "momentum_queue":
        raise ValueError(f"loss '{loss}' takes teacher inputs laid out over the batch's own candidates; "
                         "negatives.source 'momentum_queue' adds queued keys the teacher never saw")
    if cfg.teacher is not None and cfg.teacher.false_negative_threshold != 0.9 and loss != "bidirectional_margin":
        raise ValueError("teacher.false_negative_threshold applies only to loss 'bidirectional_margin'")
    uses_teacher = "teacher" in sources or cfg.sampler.name in ("clustered", "mined_batches") or cfg.mining is not None
    if cfg.teacher is not None and not uses_teacher:
        raise ValueError("teacher is set but nothing uses it (it serves distillation/dclr/soft_infonce/"
                         "bidirectional_margin losses, samplers clustered/mined_batches and mining)")


def _check_batches(cfg: Any) -> None:
    sampler, data = cfg.sampler.name, cfg.data
    if sampler == "single_source" and not (isinstance(data.source, list) and len(data.source) >= 2):
        raise ValueError("sampler 'single_source' batches within each data source: give data.source as a list of "
                         "two or more files")
    if sampler in ("clustered", "mined_batches") and cfg.teacher is None:
        raise ValueError(f"sampler '{sampler}' groups examples by teacher embeddings: set teacher.model")
    if cfg.sampler.groups_per_batch > cfg.train.batch_size:
        raise ValueError(f"sampler.groups_per_batch ({cfg.sampler.groups_per_batch}) exceeds train.batch_size "
                         f"({cfg.train.batch_size})")
    if cfg.mining is not None:
        if cfg.teacher is None:
            raise ValueError("mining retrieves hard negatives with a teacher: set teacher.model")
        if data.kind != "pair":
            raise ValueError(f"mining turns (anchor, positive) pairs into triplets: data.kind must be 'pair', "
                             f"not '{data.kind}'")
        if data.streaming:
            raise ValueError("mining needs the whole corpus in memory: set data.streaming=false")
        if cfg.loss.name in NO_NEGATIVE_LOSSES:
            raise ValueError(f"mining adds hard negatives, but loss '{cfg.loss.name}' takes none")
    if cfg.loss.name == "triplet" and data.kind != "triplet" and cfg.mining is None:
        raise ValueError("loss 'triplet' needs a hard negative per example: data.kind 'triplet' or a mining section")
    if data.kind == "triplet" and cfg.loss.name in NO_NEGATIVE_LOSSES:
        raise ValueError(f"data.kind 'triplet' has hard negatives, but loss '{cfg.loss.name}' takes none")


def check_composition(cfg: Any) -> None:
    """Raise ValueError for a combination of views, loss inputs, samplers and mining that cannot work."""
    _check_views(cfg)
    _check_loss_inputs(cfg)
    _check_batches(cfg)


__all__ = ["NO_NEGATIVE_LOSSES", "check_composition"]
