"""Cross-device negatives: every rank contrasts against the embeddings of all ranks.

The practice of SimCSE and DPR (Karpukhin et al. 2020) for multi-GPU training, in the shape of
open_clip's ``ClipLoss`` with the local slice kept differentiable. Each global batch is split
across ranks; each rank embeds its slice, all-gathers anchors, positives, hard negatives and
per-row extras, puts its own (graph-carrying) tensors back in its slot and evaluates the loss
on the whole global batch. The gathered layout is therefore exactly the one-process layout of the
concatenated batch: row ``rank * local_batch + i`` is this rank's anchor ``i``, its positive is
candidate column ``rank * local_batch + i`` and hard negative ``j`` of global row ``g`` is column
``N + g * k + j`` (N = global batch, k = hard negatives per row), whatever the loss. Since every
rank computes the full loss, the gradient w.r.t. its own slice is the full-batch gradient (no
backward communication); summing the parameter gradients over ranks (``before_optimizer_step``)
gives exactly the one-process gradient. The loss itself (a small (N, C) matrix) is computed on
every rank; the encoder work is split.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...errors import ConfigError, TrainingError
from ..batch import Embedded
from .base import EmbedFloat, LossFn, Stateless


def split_sizes(n: int, world: int) -> list[int]:
    """Rows of a global batch of ``n`` given to each of ``world`` ranks (as even as possible, in rank order)."""
    return [n // world + (1 if r < n % world else 0) for r in range(world)]


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
    Extras must be per-row tensors (first dimension = the examples); they are gathered too.
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
            device = next(encoder.parameters()).device
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.group_started_here = True
            # A group still alive at interpreter exit can abort the process ("terminate called
            # without an active exception", SIGABRT) while its threads are torn down.
            atexit.register(_destroy_group)
        with torch.no_grad():
            for t in [*encoder.parameters(), *encoder.buffers()]:
                dist.broadcast(t.data, src=0)

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float:
        """Loss of the global batch (same on every rank); this rank's share of the gradient is accumulated."""
        rank, world = dist.get_rank(), dist.get_world_size()
        sizes = split_sizes(len(batch), world)
        if min(sizes) == 0:
            raise TrainingError(f"a batch of {len(batch)} examples cannot be split across {world} ranks; "
                                f"use train.batch_size >= {world}")
        start = sum(sizes[:rank])
        local = embed(encoder, batch[start:start + sizes[rank]])
        full = Embedded(gather_rows(local.anchor, sizes, rank), gather_rows(local.positive, sizes, rank),
                        None if local.negatives is None else gather_rows(local.negatives, sizes, rank),
                        {k: gather_rows(v, sizes, rank) for k, v in local.extras.items()})
        loss = full.loss(loss_fn)
        (loss * scale).backward()
        return float(loss.detach())

    def before_optimizer_step(self, encoder: nn.Module) -> None:
        """Sum the parameter gradients over ranks (one flat all-reduce), so every rank holds the full gradient."""
        params = [p for p in encoder.parameters() if p.requires_grad]
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        dist.all_reduce(has, op=dist.ReduceOp.SUM)  # a parameter no rank used keeps grad None
        params = [p for p, h in zip(params, has.tolist()) if h > 0]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n


__all__ = ["CrossDeviceNegatives", "gather_rows", "split_sizes"]


def _destroy_group() -> None:
    """Leave the process group before the interpreter exits (registered by :meth:`CrossDeviceNegatives.setup`)."""
    if dist.is_initialized():
        dist.destroy_process_group()
