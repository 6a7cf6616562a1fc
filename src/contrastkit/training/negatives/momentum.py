"""Momentum queue: past keys of an EMA encoder as extra negatives (MoCo for sentences).

He, Fan, Wu, Xie and Girshick, "Momentum Contrast for Unsupervised Visual Representation
Learning", CVPR 2020; used for sentence embeddings by MoCoSE (Cao et al. 2022) and ESimCSE (Wu et
al. 2022). A key encoder θ_k, an exponential moving average of the trained (query) encoder θ_q,
embeds the positives and hard negatives without gradient; a FIFO queue of the keys of the last
``queue_size`` examples is appended to every anchor's candidates. After each optimizer step
θ_k ← m θ_k + (1 − m) θ_q and the step's keys are enqueued (oldest overwritten). Optional
false-negative filtering (cf. "Momentum Contrastive Learning with Enhanced Negative Sampling and
Hard Negative Filtering") drops, for a batch, queued keys whose cosine similarity to any of its
anchors exceeds ``filter_threshold``.

The key encoder runs in eval mode (no dropout), so keys are deterministic functions of θ_k.
Queued keys are appended in the loss's hard-negative slots (``infonce`` column layout): the
newest ``N * floor(M / N)`` of the M usable keys (N = batch rows) are spread over the rows, which
is exact for losses where every hard negative is a candidate for every anchor.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError
from ..batch import Embedded
from .base import EmbedFloat, LossFn


class KeyQueue:
    """A FIFO ring buffer of ``size`` key vectors."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer: Tensor | None = None
        self.ptr = 0  # next slot to write
        self.count = 0  # filled slots

    def push(self, keys: Tensor) -> None:
        """Enqueue ``keys`` (b, d) in order; the oldest entries are overwritten once full."""
        keys = keys.detach()
        if self.buffer is None:
            self.buffer = keys.new_zeros((self.size, keys.shape[1]), dtype=torch.float32)
        if keys.shape[0] > self.size:
            keys = keys[-self.size:]
        idx = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.size
        self.buffer[idx.to(self.buffer.device)] = keys.float().to(self.buffer.device)
        self.ptr = (self.ptr + keys.shape[0]) % self.size
        self.count = min(self.size, self.count + keys.shape[0])

    def keys(self) -> Tensor | None:
        """Queued keys, oldest first (None while empty)."""
        if self.buffer is None or self.count == 0:
            return None
        if self.count < self.size:
            return self.buffer[:self.count]
        return torch.cat([self.buffer[self.ptr:], self.buffer[:self.ptr]])

    def state_dict(self) -> dict[str, Any]:
        """Buffer, pointer and fill count."""
        return {"buffer": None if self.buffer is None else self.buffer.clone(), "ptr": self.ptr, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.buffer = None if state["buffer"] is None else state["buffer"].clone()
        self.ptr, self.count = int(state["ptr"]), int(state["count"])


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """θ_target ← m θ_target + (1 − m) θ_source for parameters; floating buffers copied likewise, others copied."""
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.mul_(momentum).add_(ps.detach(), alpha=1.0 - momentum)
    for bt, bs in zip(target.buffers(), source.buffers()):
        if bt.is_floating_point():
            bt.mul_(momentum).add_(bs, alpha=1.0 - momentum)
        else:
            bt.copy_(bs)


def filter_keys(keys: Tensor, anchors: Tensor, threshold: float | None) -> Tensor:
    """Keys whose cosine similarity to every anchor is at most ``threshold`` (all keys when None)."""
    if threshold is None or keys.shape[0] == 0:
        return keys
    sim = F.normalize(anchors.detach().float(), dim=-1) @ F.normalize(keys, dim=-1).T
    return keys[sim.max(dim=0).values <= threshold]


def append_queue(negatives: Tensor | None, keys: Tensor | None, n: int) -> Tensor | None:
    """Hard negatives (n, k, d) with the newest ``n * floor(M / n)`` of the M ``keys`` added as k' more columns."""
    if keys is None or keys.shape[0] < n:
        return negatives
    per_row = keys.shape[0] // n
    extra = keys[keys.shape[0] - per_row * n:].reshape(n, per_row, -1)
    if negatives is None:
        return extra
    if negatives.ndim == 2:
        negatives = negatives.unsqueeze(1)
    return torch.cat([negatives, extra.to(negatives.dtype)], dim=1)


class MomentumQueueNegatives:
    """MoCo (He et al. 2020): EMA key encoder + FIFO queue of past keys as extra negatives."""

    def __init__(self, queue_size: int, momentum: float = 0.995, filter_threshold: float | None = None) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ConfigError(f"negatives.queue_size must be an int >= 1, got {queue_size!r}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"negatives.momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.filter_threshold = filter_threshold
        self.queue = KeyQueue(queue_size)
        self.key_encoder: nn.Module | None = None
        self._pending: list[Tensor] = []

    def setup(self, encoder: nn.Module) -> None:
        """Create the key encoder as a frozen copy of ``encoder``."""
        self.key_encoder = copy.deepcopy(encoder)
        self.key_encoder.requires_grad_(False)
        self.key_encoder.eval()

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float:
        """Anchors from ``encoder``, positives/hard negatives from the key encoder, queued keys appended."""
        if self.key_encoder is None:
            raise RuntimeError("MomentumQueueNegatives.setup(encoder) was not called")
        query = embed(encoder, batch)
        with torch.no_grad():
            key = embed(self.key_encoder, batch)
        queued = self.queue.keys()
        if queued is not None:
            queued = filter_keys(queued.to(query.anchor.device), query.anchor, self.filter_threshold)
        n = query.anchor.shape[0]
        negatives = append_queue(key.negatives, queued, n)
        loss = Embedded(query.anchor, key.positive, negatives, query.extras).loss(loss_fn)
        (loss * scale).backward()
        self._pending.append(key.positive.detach())
        return float(loss.detach())

    def before_optimizer_step(self, encoder: nn.Module) -> None:
        """Nothing to do before the update."""

    def after_optimizer_step(self, encoder: nn.Module) -> None:
        """EMA-update the key encoder, then enqueue the keys of this step's micro-batches."""
        assert self.key_encoder is not None
        ema_update(self.key_encoder, encoder, self.momentum)
        for keys in self._pending:
            self.queue.push(keys)
        self._pending.clear()

    def state_dict(self) -> dict[str, Any]:
        """Key-encoder weights and the queue (keys of micro-batches not yet stepped are not kept)."""
        assert self.key_encoder is not None
        return {"key_encoder": {k: v.detach().clone() for k, v in self.key_encoder.state_dict().items()},
                "queue": self.queue.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (after :meth:`setup`)."""
        assert self.key_encoder is not None
        self.key_encoder.load_state_dict(state["key_encoder"])
        self.queue.load_state_dict(state["queue"])
        self._pending.clear()


__all__ = ["KeyQueue", "MomentumQueueNegatives", "append_queue", "ema_update", "filter_keys"]
