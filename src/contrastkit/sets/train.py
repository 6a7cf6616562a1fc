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

import logging
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, TrainingError

__all__ = ["fine_tune_inter_set", "inter_set_loss"]

_log = logging.getLogger(__name__)


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


def fine_tune_inter_set(encoder: Any, sets: Sequence[Sequence[str]], *, steps: int, per_set: int = 8,
                        lr: float = 2e-5, temperature: float = 0.05, groups: Sequence[Sequence[int]] | None = None,
                        seed: int = 0, log_every: int = 25) -> list[dict[str, float]]:
    """Fine-tune a contrastkit ``Encoder`` with :func:`inter_set_loss` on ``sets`` of example sentences.

    Each step samples ``per_set`` sentences of every set of one group and applies the loss; ``groups``
    lists which sets contrast each other (default: all of them; e.g. sentiment sets against each other and
    question-type sets against each other, when the sentences of different groups are not opposites).
    Returns the loss history.
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
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optim = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=lr)
    encoder.train()
    history: list[dict[str, float]] = []
    running = 0.0
    for step in range(1, steps + 1):
        group = groups[(step - 1) % len(groups)]
        texts: list[str] = []
        ids: list[int] = []
        for i in group:
            chosen = rng.sample(list(sets[i]), min(per_set, len(sets[i])))
            texts += chosen
            ids += [i] * len(chosen)
        emb = encoder.embed_texts(texts)
        loss = inter_set_loss(emb, torch.tensor(ids, device=emb.device), temperature=temperature)
        if not torch.isfinite(loss):
            raise TrainingError(f"inter-set fine-tuning: non-finite loss at step {step}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optim.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            history.append({"step": step, "loss": running / n})
            _log.info("inter-set step %d/%d loss %.4f", step, steps, running / n)
            running = 0.0
    encoder.eval()
    return history
