"""Cross-device negatives: every rank contrasts against the embeddings of all ranks.

The practice of SimCSE and DPR (Karpukhin et al. 2020) for multi-GPU training, in the shape of
open_clip's ``ClipLoss`` with the local slice kept differentiable. Each global batch is split
across ranks (the trainer hands each rank only its own rows, a :class:`~contrastkit.samplers.ShardBatch`);
each rank embeds its slice, all-gathers anchors, positives, hard negatives and per-row extras, puts its
own (graph-carrying) tensors back in its slot and evaluates the loss on the whole global batch. The
gathered layout is therefore exactly the one-process layout of the concatenated batch: row
``rank * local_batch + i`` is this rank's anchor ``i``, its positive is candidate column
``rank * local_batch + i`` and hard negative ``j`` of global row ``g`` is column ``N + g * k + j``
(N = global batch, k = hard negatives per row), whatever the loss. Since every rank computes the full
loss, the gradient w.r.t. its own slice is the full-batch gradient (no backward communication), and the
one-process gradient is the SUM of the ranks' parameter gradients. DistributedDataParallel (the
trainer's :class:`~contrastkit.training.distributed.DataParallel`) AVERAGES gradients over ranks, so the
loss is back-propagated times the world size: average of world x partial = sum = one process. The loss
itself (a small (N, C) matrix) is computed on every rank; the encoder work is split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...errors import ConfigError, TrainingError
from ...samplers import split_sizes
from .. import distributed
from ..batch import Embedded
from .base import EmbedFloat, LossFn, Stateless


def gather_rows(local: Tensor, sizes: list[int], rank: int) -> Tensor:
    """Concatenate every rank's ``local`` along dim 0 (ranks may hold different row counts).

    Other ranks' rows arrive without gradient; this rank's rows are ``local`` itself, so the
    result stays differentiable w.r.t. ``local``.
    """
    pad = max(sizes) - local.shape[0]
    send = local.detach()
    if pad:
        send = torch.cat([send, send.new_zeros((pad, *send.shape[1:]))])
    recv = [torch.empty_like(send) for _ in sizes]
    dist.all_gather(recv, send.contiguous())
    parts = [local if r == rank else recv[r][:s] for r, s in enumerate(sizes)]
    return torch.cat(parts)


class CrossDeviceNegatives(Stateless):
    """All-gathered negatives across the ranks of a ``torchrun`` launch (one process per device).

    ``train.batch_size`` is the global batch; rank r embeds rows ``[sum(sizes[:r]), sum(sizes[:r+1]))``.
    Extras must be per-row tensors (first dimension = the examples); they are gathered too. The gradients
    it leaves are ``world`` times this rank's share: they must be averaged over ranks, as
    DistributedDataParallel does (the Trainer wraps the encoder in it).
    """

    def __init__(self) -> None:
        if "WORLD_SIZE" not in os.environ and not (dist.is_available() and dist.is_initialized()):
            raise ConfigError("negatives.source 'cross_device' needs a distributed launch: run "
                              "`torchrun --nproc_per_node N -m contrastkit train ...` (WORLD_SIZE is not set)")
        self.group_started_here = False

    def setup(self, encoder: nn.Module) -> None:
        """Join the process group (gloo on CPU, nccl on CUDA) and make all ranks start from rank 0's weights."""
        if not dist.is_available():
            raise ConfigError("negatives.source 'cross_device' needs torch.distributed, which this torch lacks")
        if not dist.is_initialized():
            if "WORLD_SIZE" not in os.environ:
                raise ConfigError("negatives.source 'cross_device' needs a distributed launch: run "
                                  "`torchrun --nproc_per_node N -m contrastkit train ...` (WORLD_SIZE is not set)")
            self.group_started_here = distributed.init_process_group(next(encoder.parameters()).device)
        with torch.no_grad():
            for t in [*encoder.parameters(), *encoder.buffers()]:
                dist.broadcast(t.data, src=0)

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float:
        """Loss of the global batch (same on every rank); back-propagates ``world * scale * loss`` for DDP to average.

        ``batch`` is this rank's :class:`~contrastkit.samplers.ShardBatch` (its ``sizes`` give the global
        layout), or a whole global batch, of which this rank embeds its slice.
        """
        rank, world = dist.get_rank(), dist.get_world_size()
        sizes = getattr(batch, "sizes", None)
        if sizes is None:  # a global batch: take this rank's rows
            sizes = split_sizes(len(batch), world)
            start = sum(sizes[:rank])
            rows = batch[start:start + sizes[rank]]
        else:
            rows = batch
            if len(sizes) != world or len(rows) != sizes[rank]:
                raise TrainingError(f"rank {rank} got a shard of {len(rows)} rows; the batch's layout {sizes} "
                                    f"is for {len(sizes)} ranks (this run has {world})")
        if min(sizes) == 0:
            raise TrainingError(f"a batch of {sum(sizes)} examples cannot be split across {world} ranks; "
                                f"use train.batch_size >= {world}")
        local = embed(encoder, rows)
        full = Embedded(gather_rows(local.anchor, sizes, rank), gather_rows(local.positive, sizes, rank),
                        None if local.negatives is None else gather_rows(local.negatives, sizes, rank),
                        {k: gather_rows(v, sizes, rank) for k, v in local.extras.items()})
        loss = full.loss(loss_fn)
        (loss * (scale * world)).backward()
        return float(loss.detach())


__all__ = ["CrossDeviceNegatives", "gather_rows", "split_sizes"]
