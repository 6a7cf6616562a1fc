"""GradCache: the gradients of a large contrastive batch with the memory of one chunk.

Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup", RepL4NLP 2021. The batch is embedded chunk by chunk without an autograd graph; the loss
is taken on the full-batch embeddings and differentiated w.r.t. those embeddings only; then each
chunk is embedded again with a graph and back-propagated with its cached embedding gradients.
By the chain rule the parameter gradients equal those of the full batch, provided the second
pass reproduces the first exactly: before each chunk's first pass the random state (torch CPU,
every CUDA device, Python ``random`` and NumPy) is recorded and restored before its second pass,
so dropout masks are identical. An embed function must therefore draw its randomness from those
global generators (or seed its own from them on each call); the state after the first pass is
restored at the end, so the run's random stream is as if the batch had been embedded once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..batch import Embedded
from ..checkpoint import rng_state, set_rng_state
from .base import EmbedFloat, LossFn, Stateless


def _capture() -> dict[str, Any]:
    return {"torch": rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def _restore(state: dict[str, Any]) -> None:
    set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def concat_embedded(parts: Sequence[Embedded]) -> Embedded:
    """Stack the embeddings (and per-row extras) of consecutive chunks along the batch dimension."""
    negs = [p.negatives for p in parts]
    if any(n is None for n in negs) and not all(n is None for n in negs):
        raise ValueError("chunks of one batch disagree on whether they have hard negatives")
    keys = parts[0].extras.keys()
    if any(p.extras.keys() != keys for p in parts):
        raise ValueError("chunks of one batch have different extras")
    return Embedded(torch.cat([p.anchor for p in parts]), torch.cat([p.positive for p in parts]),
                    None if negs[0] is None else torch.cat(negs),  # type: ignore[arg-type]
                    {k: torch.cat([p.extras[k] for p in parts]) for k in keys})


class CachedNegatives(Stateless):
    """GradCache (Gao et al. 2021): full-batch negatives and gradients, forward memory of ``chunk_size`` rows.

    Extras must be per-row tensors (first dimension = the chunk's examples); they are concatenated.
    """

    def __init__(self, chunk_size: int) -> None:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"negatives.chunk_size must be an int >= 1, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def loss_and_backward(self, encoder: nn.Module, batch: Sequence[Any], embed: EmbedFloat, loss_fn: LossFn,
                          scale: float) -> float:
        """Loss of the whole micro-batch; accumulates the gradients of ``scale * loss``."""
        chunks = [batch[i:i + self.chunk_size] for i in range(0, len(batch), self.chunk_size)]
        states, parts = [], []
        with torch.no_grad():  # pass 1: embeddings only, no graph
            for chunk in chunks:
                states.append(_capture())
                parts.append(embed(encoder, chunk))
        after = _capture()
        full = concat_embedded(parts)
        leaves = [t.detach().requires_grad_() if t is not None else None
                  for t in (full.anchor, full.positive, full.negatives)]
        full = Embedded(leaves[0], leaves[1], leaves[2], full.extras)  # type: ignore[arg-type]
        loss = full.loss(loss_fn)
        (loss * scale).backward()  # gradients w.r.t. the embeddings only
        grads = [None if t is None else t.grad for t in leaves]
        start = 0
        try:
            for chunk, state in zip(chunks, states):  # pass 2: replay each chunk with a graph
                rows = slice(start, start + len(chunk))
                start += len(chunk)
                _restore(state)
                part = embed(encoder, chunk)
                outs: list[Tensor] = []
                cached: list[Tensor] = []
                for out, grad in zip((part.anchor, part.positive, part.negatives), grads):
                    if out is not None and grad is not None:
                        outs.append(out)
                        cached.append(grad[rows])
                if outs:
                    torch.autograd.backward(outs, cached)
        finally:
            _restore(after)
        return float(loss.detach())


__all__ = ["CachedNegatives", "concat_embedded"]
