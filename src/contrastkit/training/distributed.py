"""Process groups and data parallelism: rank and world size, joining a ``torchrun`` group, and
:class:`DataParallel`, PyTorch ``DistributedDataParallel`` around an encoder driven by any embed function.

Under ``torchrun`` (or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``)
the trainer joins the process group (gloo on CPU, nccl on CUDA) and synchronises gradients with DDP: bucketed
all-reduces that start during the backward pass, skipped (``no_sync``) on all but the last micro-batch of
gradient accumulation. DDP averages gradients over ranks.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .batch import Embedded


def world_size() -> int:
    """Processes in the run (1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on the process that writes checkpoints, metrics and the model (rank 0)."""
    return rank() == 0


def is_distributed() -> bool:
    """True when a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched() -> bool:
    """True under a multi-process launch (``WORLD_SIZE`` > 1 in the environment, as torchrun sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: torch.device | str) -> bool:
    """Join the launch's process group (nccl for a CUDA ``device``, else gloo) unless already in one.

    Returns True when this call started the group (it is then left at interpreter exit).
    """
    if dist.is_initialized():
        return False
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    # A group still alive at interpreter exit can abort the process ("terminate called
    # without an active exception", SIGABRT) while its threads are torn down.
    atexit.register(_destroy_group)
    return True


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _Runner(nn.Module):
    """The module DDP wraps: its forward runs a closure on the encoder (embed functions call arbitrary
    encoder methods, not only ``forward``; DDP only needs its own forward around them)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, run: Callable[[nn.Module], Any]) -> Any:
        return run(self.encoder)


class DataParallel:
    """``DistributedDataParallel`` around ``encoder`` for embed functions ``embed(encoder, batch)``.

    :meth:`wrap` turns an embed function into one whose grad-enabled calls on ``encoder`` run inside DDP's
    forward, so the backward pass that follows all-reduces (averages) the gradients in buckets while it
    runs; calls on another module (a momentum key encoder) or without grad run as before. ``encoder``
    itself stays unwrapped: save, load, evaluate and step the optimizer on it. Gradients of parameters no
    rank used stay None (``find_unused_parameters``: the BERT pooler, an LM head or the layers after a
    read-out layer get no gradient; pass False when every trainable parameter gets one each step, a little
    faster). Frozen parameters (LoRA bases) are skipped by DDP.
    """

    def __init__(self, encoder: nn.Module, *, find_unused_parameters: bool = True,
                 bucket_cap_mb: float | None = None) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.encoder = encoder
        kwargs: dict[str, Any] = {} if bucket_cap_mb is None else {"bucket_cap_mb": bucket_cap_mb}
        # device_ids=None: inputs are not moved (embed functions put their tensors on the device);
        # broadcast_buffers=False: buffers (position ids) are constant, ranks start equal (DDP broadcasts rank
        # 0's parameters and buffers once here).
        self.ddp = DistributedDataParallel(_Runner(encoder), device_ids=None, broadcast_buffers=False,
                                           find_unused_parameters=find_unused_parameters, **kwargs)

    def wrap(self, embed: Callable[[Any, Sequence[Any]], Any]) -> Callable[[Any, Sequence[Any]], Any]:
        """``embed`` with its grad-enabled calls on the encoder run through DDP."""

        def call(encoder: Any, batch: Sequence[Any]) -> Any:
            if encoder is not self.encoder or not torch.is_grad_enabled():
                return embed(encoder, batch)
            packed: list[bool] = []

            def run(enc: nn.Module) -> Any:
                out = embed(enc, batch)
                if isinstance(out, Embedded):  # as a tuple, so that DDP's output tree (pytree) reaches its tensors
                    packed.append(True)
                    return out.anchor, out.positive, out.negatives, dict(out.extras)
                return out

            out = self.ddp(run)
            return Embedded(out[0], out[1], out[2], out[3]) if packed else out

        return call

    @contextlib.contextmanager
    def sync(self, enabled: bool) -> Iterator[None]:
        """Inside, forward/backward passes all-reduce gradients only when ``enabled`` (else DDP's ``no_sync``:
        they accumulate locally and the next synchronised backward reduces the sum)."""
        if enabled:
            yield
        else:
            with self.ddp.no_sync():
                yield


__all__ = ["DataParallel", "init_process_group", "is_distributed", "is_main", "launched", "rank", "world_size"]
