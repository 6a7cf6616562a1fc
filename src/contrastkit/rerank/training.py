"""Training rerankers: a listwise contrastive loss over cross-encoder scores, teacher-mined negatives, and the
distillation of a cross-encoder into a bi-encoder.

- Listwise softmax (InfoNCE over cross-encoder scores): for each query, softmax over the scores of its
  positive and its negatives, cross-entropy with the positive (the "localized contrastive estimation" of
  Gao et al., "Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline", ECIR 2021), with
  negatives mined by a bi-encoder teacher (:func:`contrastkit.data.mining.mine_negatives`, NV-Retriever's
  positive-aware filtering).
- Distillation (the DSE idea: Barkan et al., "Scalable Attentive Sentence-Pair Modeling via Distilled
  Sentence Embedding", AAAI 2020): a bi-encoder student learns the cross-encoder teacher's score
  distribution over each query's candidates with :func:`contrastkit.losses.distill.listwise_distill`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.examples import Example
from ..data.mining import MiningStats, mine_negatives
from ..errors import ConfigError, TrainingError
from ..losses.distill import listwise_distill
from .cross_encoder import CrossEncoderReranker

__all__ = ["distill_cross_encoder", "listwise_softmax_loss", "mine_rerank_examples", "train_cross_encoder"]

_log = logging.getLogger(__name__)


def listwise_softmax_loss(scores: Tensor, *, temperature: float = 1.0) -> Tensor:
    """Mean cross-entropy of each row's softmax with column 0 (the positive); ``scores`` is (N, 1+k) logits.

    InfoNCE over cross-encoder scores: ``-log exp(s_pos/t) / sum_j exp(s_j/t)``.
    """
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"listwise_softmax_loss: scores must be (N, 1+k) with k >= 1, got {tuple(scores.shape)}")
    if not temperature > 0:
        raise ValueError(f"listwise_softmax_loss: temperature must be > 0, got {temperature}")
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


def mine_rerank_examples(pairs: Sequence[tuple[str, str]], teacher: Callable[[list[str]], Any], *,
                         num_negatives: int = 4, rank_window: Sequence[int] = (0, 30), margin: float = 0.95,
                         margin_type: str = "relative") -> tuple[list[Example], MiningStats]:
    """(query, positive) pairs -> (query, positive, negative_1..k) with negatives a bi-encoder teacher ranks high.

    ``teacher(texts) -> (n, d)`` embeds texts (e.g. ``Teacher(encoder).embed``); candidates scoring above
    ``margin`` x the positive's score are dropped as likely false negatives. Pairs left without enough
    negatives are counted in the returned stats, never silently dropped.
    """

    def embed(texts: list[str]) -> Tensor:
        out = teacher(texts)
        return out if isinstance(out, Tensor) else torch.as_tensor(np.asarray(out))

    return mine_negatives([Example((q, p)) for q, p in pairs], embed, rank_window=rank_window, margin=margin,
                          margin_type=margin_type, num_negatives=num_negatives)


def _check_examples(examples: Sequence[Example]) -> int:
    if not examples:
        raise ConfigError("no training examples (after mining)")
    sizes = {len(ex.texts) for ex in examples}
    if len(sizes) != 1 or min(sizes) < 3:
        raise ConfigError(f"every example must be (query, positive, negative_1..k) with the same k >= 1; "
                          f"found sizes {sorted(sizes)}")
    return sizes.pop() - 1


def _schedule(optim: torch.optim.Optimizer, steps: int, warmup: float) -> Any:
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optim, int(warmup * steps), steps)


def train_cross_encoder(reranker: CrossEncoderReranker, examples: Sequence[Example], *, steps: int,
                        batch_size: int = 8, lr: float = 2e-5, temperature: float = 1.0, warmup: float = 0.1,
                        weight_decay: float = 0.01, seed: int = 0, log_every: int = 25) -> list[dict[str, float]]:
    """Fine-tune ``reranker`` with :func:`listwise_softmax_loss` on (query, positive, negatives...) examples.

    Each step scores ``batch_size`` queries x (1 + k) candidates in one forward pass. Returns the loss
    history ([{step, loss, examples_per_s}] every ``log_every`` steps and at the end).
    """
    k1 = _check_examples(examples)
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optim = torch.optim.AdamW(reranker.parameters(), lr=lr, weight_decay=weight_decay)
    sched = _schedule(optim, steps, warmup)
    reranker.train()
    order: list[int] = []
    history: list[dict[str, float]] = []
    t0, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        batch = [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
        queries = [ex.texts[0] for ex in batch for _ in range(k1)]
        docs = [d for ex in batch for d in ex.texts[1:]]
        scores = reranker.score_pairs(queries, docs).view(len(batch), k1)
        loss = listwise_softmax_loss(scores, temperature=temperature)
        if not torch.isfinite(loss):
            raise TrainingError(f"cross-encoder training: non-finite loss at step {step}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reranker.parameters(), 1.0)
        optim.step()
        sched.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            rate = step * batch_size / max(time.perf_counter() - t0, 1e-9)
            history.append({"step": step, "loss": running / n, "examples_per_s": rate})
            _log.info("cross-encoder step %d/%d loss %.4f (%.1f queries/s)", step, steps, running / n, rate)
            running = 0.0
    reranker.eval()
    return history


def distill_cross_encoder(student: Any, teacher: CrossEncoderReranker, examples: Sequence[Example], *,
                          steps: int, batch_size: int = 16, lr: float = 2e-5, temperature: float = 0.05,
                          teacher_temperature: float = 1.0, warmup: float = 0.1, seed: int = 0,
                          log_every: int = 25, teacher_batch_size: int = 64) -> list[dict[str, float]]:
    """Train a bi-encoder ``student`` (contrastkit Encoder) to reproduce a cross-encoder's listwise scores (DSE).

    The teacher's logits of every (query, candidate) pair are computed once; each step applies
    :func:`~contrastkit.losses.distill.listwise_distill` (KL from the teacher's softmax over the query's
    candidates to the student's softmax of cosine / ``temperature``). Returns the loss history.
    """
    k1 = _check_examples(examples)
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    pairs = [(ex.texts[0], d) for ex in examples for d in ex.texts[1:]]
    teacher_scores = torch.from_numpy(teacher.predict(pairs, batch_size=teacher_batch_size, activation=False))
    teacher_scores = teacher_scores.view(len(examples), k1)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optim = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    sched = _schedule(optim, steps, warmup)
    student.train()
    order: list[int] = []
    history: list[dict[str, float]] = []
    running = 0.0
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        idx = order[:batch_size]
        del order[:batch_size]
        batch = [examples[i] for i in idx]
        emb = student.embed_texts([t for ex in batch for t in ex.texts])
        emb = emb.view(len(batch), 1 + k1, -1)
        loss = listwise_distill(emb[:, 0], emb[:, 1], emb[:, 2:] if k1 > 1 else None,
                                teacher_scores=teacher_scores[idx].to(emb.device), temperature=temperature,
                                teacher_temperature=teacher_temperature)
        if not math.isfinite(float(loss.detach())):
            raise TrainingError(f"distillation: non-finite loss at step {step}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optim.step()
        sched.step()
        running += float(loss.detach())
        if step % log_every == 0 or step == steps:
            n = log_every if step % log_every == 0 else step % log_every
            history.append({"step": step, "loss": running / n})
            _log.info("distill step %d/%d loss %.4f", step, steps, running / n)
            running = 0.0
    student.eval()
    return history
