"""Where negatives come from: in-batch, cross-device, cached (GradCache) or a momentum queue.

Each source implements :class:`NegativeSource`; the trainer delegates "loss of a micro-batch and
backward" to it and knows nothing about the loss. ``build_negatives`` turns a config section into
a source.
"""

from __future__ import annotations

from typing import Any

from .base import NegativeSource
from .cross_device import CrossDeviceNegatives
from .gradcache import CachedNegatives
from .in_batch import InBatchNegatives
from .momentum import MomentumQueueNegatives


def build_negatives(cfg: Any) -> NegativeSource:
    """The source a ``NegativesConfig`` describes."""
    if cfg.source == "in_batch":
        return InBatchNegatives()
    if cfg.source == "cached":
        return CachedNegatives(cfg.chunk_size)
    if cfg.source == "cross_device":
        return CrossDeviceNegatives()
    if cfg.source == "momentum_queue":
        return MomentumQueueNegatives(cfg.queue_size, cfg.momentum, cfg.filter_threshold)
    raise ValueError(f"unknown negatives.source {cfg.source!r}")


__all__ = ["CachedNegatives", "CrossDeviceNegatives", "InBatchNegatives", "MomentumQueueNegatives",
           "NegativeSource", "build_negatives"]
