"""Process-group helpers: rank, world size and the main process, from torch.distributed or torchrun's env."""

from __future__ import annotations

import os

import torch.distributed as dist


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


__all__ = ["is_distributed", "is_main", "rank", "world_size"]
