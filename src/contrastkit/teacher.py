"""A frozen teacher encoder: distillation targets, reference similarities, clustered batches, mined negatives.

One teacher (``teacher.model`` in the config) serves every consumer: the loss inputs of
``mse_distill`` / ``listwise_distill`` / ``soft_infonce`` / ``dclr`` / ``bidirectional_margin``
(teacher embeddings of the batch texts, computed under ``no_grad`` every step), the ``clustered``
and ``mined_batches`` samplers and hard-negative mining (embeddings of the whole corpus, once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class Teacher:
    """Frozen encoder that embeds texts without gradients (eval mode: no dropout)."""

    def __init__(self, encoder: Any, *, batch_size: int = 128) -> None:
        self.encoder = encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg: Any, device: str | torch.device = "cpu") -> Teacher:
        """Load the teacher a ``teacher`` config section names (any path/name ``Encoder.from_pretrained`` takes)."""
        from .encoders import Encoder

        enc = Encoder.from_pretrained(cfg.model, pooling=cfg.pooling, max_length=cfg.max_length)
        return cls(enc.to(device), batch_size=cfg.batch_size)

    @property
    def dim(self) -> int:
        """Embedding dimension of the teacher."""
        return int(self.encoder.dim)

    def embed(self, texts: Sequence[str], *, show_progress: bool = False) -> Tensor:
        """(n, d) float32 embeddings of ``texts`` (unnormalised), as an ordinary tensor on the teacher's device."""
        out = self.encoder.encode(list(texts), batch_size=self.batch_size, convert_to="torch",
                                  show_progress=show_progress)
        return out.clone().to(self.encoder.device)  # leave inference mode: usable beside autograd tensors


__all__ = ["Teacher"]
