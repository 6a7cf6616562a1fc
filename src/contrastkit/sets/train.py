"""SetCSE inter-set contrastive fine-tuning (Liu, "SetCSE: Set Operations using Contrastive Learning of Sentence
Embeddings", ICLR 2024, arXiv 2404.17606; Step 1 of the paper's Fig. 1).

Given sets ``S_1..S_N`` that each stand for one semantic, the loss of a set (``l_A`` in Fig. 1) pulls each of
its sentences towards the other members of the same set and pushes it from the sentences of every other set
(they are its negatives), with cosine similarity over a temperature ``t``. This module writes it as an
InfoNCE over ordered same-set pairs (x, x+):

    L = mean over (x, x+) of  -log  exp(cos(x, x+)/t) / ( exp(cos(x, x+)/t) + sum_{y not in S_i} exp(cos(x, y)/t) )

so a model learns to tell apart exactly the semantics the user's sets express. The positives/negatives
structure is the paper's (Fig. 1); the per-pair normalisation, the mean instead of a sum over sets, the
temperature default and the per-step sampling (``per_set`` sentences of every set of a group) are choices
of this package that could not be checked against the paper's equation text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..training.trainer import Trainer, fit_in

__all__ = ["SetBatches", "fine_tune_inter_set", "inter_set_loss"]


def inter_set_loss(embeddings: Tensor, set_ids: Tensor, *, temperature: float = 0.05) -> Tensor:
    """SetCSE's inter-set contrastive loss over a batch: ``embeddings`` (n, d), ``set_ids`` (n,) integer labels.

    Every ordered same-set pair (x, x+) is one term; its negatives are every row of another set.
    Needs at least one set with two members and at least two sets.
    """
    if embeddings.ndim != 2 or set_ids.shape != embeddings.shape[:1]:
        raise ValueError(f"inter_set_loss: embeddings (n, d) and set_ids (n,) expected, got "
                         f"{tuple(embeddings.shape)} and {tuple(set_ids.shape)}")
    if not temperature > 0:
        raise ValueError(f"inter_set_loss: temperature must be > 0, got {temperature}")
    z = F.normalize(embeddings, dim=-1)
    sim = z @ z.T / temperature
    same = set_ids[:, None] == set_ids[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    pos = same & ~eye
    if not pos.any() or same.all():
        raise ValueError("inter_set_loss: needs two or more sets and a set with two or more members in the batch")
    neg_lse = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)  # (n, 1)
    terms = torch.logaddexp(sim, neg_lse.expand_as(sim)) - sim  # -log(e^pos / (e^pos + sum e^neg))
    return terms[pos].mean()


class SetBatches:
    """SetCSE's batches: batch ``b`` of an epoch holds ``per_set`` sentences of every set of group ``b`` (an epoch
    is one batch per group) as (text, set index) pairs, drawn from ``seed``, the epoch and ``b`` (resumable)."""

    def __init__(self, sets: Sequence[Sequence[str]], groups: Sequence[Sequence[int]], per_set: int,
                 seed: int = 0) -> None:
        self.sets, self.groups, self.per_set, self.seed = sets, groups, per_set, seed

    @property
    def batches_per_epoch(self) -> int:
        """One batch per group."""
        return len(self.groups)

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[tuple[str, int]]]:
        """Yield the batches of ``epoch`` from batch index ``start`` on."""
        for b in range(start, len(self.groups)):
            rng = np.random.default_rng([self.seed, epoch, b])
            yield [(self.sets[i][j], i) for i in self.groups[b]
                   for j in rng.choice(len(self.sets[i]), min(self.per_set, len(self.sets[i])), replace=False)]


def fine_tune_inter_set(encoder: Any, sets: Sequence[Sequence[str]], *, steps: int, per_set: int = 8,
                        lr: float = 2e-5, temperature: float = 0.05, groups: Sequence[Sequence[int]] | None = None,
                        seed: int = 0, log_every: int = 25, run_dir: str | Path | None = None, resume: bool = False,
                        **train: Any) -> list[dict[str, Any]]:
    """Fine-tune a contrastkit ``Encoder`` with :func:`inter_set_loss` on ``sets`` of example sentences.

    Each step samples ``per_set`` sentences of every set of one group and applies the loss; ``groups``
    lists which sets contrast each other (default: all of them; e.g. sentiment sets against each other and
    question-type sets against each other, when the sentences of different groups are not opposites).
    Runs on the :class:`~contrastkit.training.trainer.Trainer` (AdamW with weight decay 0.01, linear decay of the
    lr): ``run_dir`` holds its checkpoints and ``metrics.jsonl`` (default: a temporary directory), ``resume``
    continues its latest checkpoint, ``train`` sets other ``train`` config keys (``max_minutes``,
    ``checkpoint_minutes``, ``precision``...; fp32 by default). Returns the logged rows.
    """
    groups = [list(range(len(sets)))] if groups is None else [list(g) for g in groups]
    for g in groups:
        if len(g) < 2 or any(not 0 <= i < len(sets) for i in g):
            raise ConfigError(f"each group needs two or more valid set indices, got {g}")
    for i, s in enumerate(sets):
        if len(s) < 2:
            raise ConfigError(f"set {i} has {len(s)} sentence(s); inter-set learning needs two or more per set")
    if steps < 1 or per_set < 2:
        raise ConfigError(f"steps must be >= 1 and per_set >= 2, got {steps} and {per_set}")

    def step_loss(model: Any, batch: Sequence[tuple[str, int]]) -> Tensor:
        emb = model.embed_texts([text for text, _ in batch])
        ids = torch.tensor([i for _, i in batch], device=emb.device)
        return inter_set_loss(emb, ids, temperature=temperature)

    keys = {"max_steps": steps, "lr": lr, "weight_decay": 0.01, "seed": seed, "log_every": log_every,
            "precision": "fp32", **train}
    result = fit_in(lambda cfg: Trainer.for_step_loss(encoder, step_loss, cfg, save=encoder.save),
                    SetBatches(sets, groups, per_set, seed), run_dir, resume=resume, **keys)
    encoder.eval()
    return result.history
