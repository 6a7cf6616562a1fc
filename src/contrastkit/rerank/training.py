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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.examples import Example
from ..data.mining import MiningStats, mine_negatives
from ..errors import ConfigError
from ..losses.distill import listwise_distill
from ..samplers import RandomBatches
from ..training.batch import Embedded
from ..training.trainer import Trainer, fit_in
from .cross_encoder import CrossEncoderReranker

__all__ = ["distill_cross_encoder", "listwise_softmax_loss", "mine_rerank_examples", "train_cross_encoder"]


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


def _keys(steps: int, batch_size: int, lr: float, warmup: float, seed: int, log_every: int,
          **train: Any) -> dict[str, Any]:
    """TrainConfig keys of the training functions' keywords (fp32 unless ``train`` sets ``precision``)."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    return {"max_steps": steps, "batch_size": batch_size, "lr": lr, "warmup_ratio": warmup, "seed": seed,
            "log_every": log_every, "precision": "fp32", **train}


def train_cross_encoder(reranker: CrossEncoderReranker, examples: Sequence[Example], *, steps: int,
                        batch_size: int = 8, lr: float = 2e-5, temperature: float = 1.0, warmup: float = 0.1,
                        weight_decay: float = 0.01, seed: int = 0, log_every: int = 25,
                        run_dir: str | Path | None = None, resume: bool = False,
                        **train: Any) -> list[dict[str, Any]]:
    """Fine-tune ``reranker`` with :func:`listwise_softmax_loss` on (query, positive, negatives...) examples.

    Each step scores ``batch_size`` queries x (1 + k) candidates in one forward pass, on the
    :class:`~contrastkit.training.trainer.Trainer`: ``run_dir`` holds its checkpoints and ``metrics.jsonl``
    (default: a temporary directory), ``resume`` continues its latest checkpoint, ``train`` sets other
    ``train`` config keys (``max_minutes``, ``checkpoint_minutes``, ``precision``, ``grad_accumulation``...).
    Returns the logged rows ({step, loss, lr, ...} every ``log_every`` steps and at the end).
    """
    k1 = _check_examples(examples)

    def step_loss(model: CrossEncoderReranker, batch: Sequence[Example]) -> Tensor:
        queries = [ex.texts[0] for ex in batch for _ in range(k1)]
        docs = [d for ex in batch for d in ex.texts[1:]]
        return listwise_softmax_loss(model.score_pairs(queries, docs).view(len(batch), k1), temperature=temperature)

    result = fit_in(lambda cfg: Trainer.for_step_loss(reranker, step_loss, cfg, save=reranker.save),
                    RandomBatches(list(examples), batch_size, seed=seed), run_dir, resume=resume,
                    **_keys(steps, batch_size, lr, warmup, seed, log_every, weight_decay=weight_decay, **train))
    reranker.eval()
    return result.history


def distill_cross_encoder(student: Any, teacher: CrossEncoderReranker, examples: Sequence[Example], *,
                          steps: int, batch_size: int = 16, lr: float = 2e-5, temperature: float = 0.05,
                          teacher_temperature: float = 1.0, warmup: float = 0.1, seed: int = 0,
                          log_every: int = 25, teacher_batch_size: int = 64, run_dir: str | Path | None = None,
                          resume: bool = False, **train: Any) -> list[dict[str, Any]]:
    """Train a bi-encoder ``student`` (contrastkit Encoder) to reproduce a cross-encoder's listwise scores (DSE).

    The teacher's logits of every (query, candidate) pair are computed once; each step applies
    :func:`~contrastkit.losses.distill.listwise_distill` (KL from the teacher's softmax over the query's
    candidates to the student's softmax of cosine / ``temperature``). ``run_dir``, ``resume`` and ``train`` as in
    :func:`train_cross_encoder`. Returns the logged rows.
    """
    k1 = _check_examples(examples)
    keys = _keys(steps, batch_size, lr, warmup, seed, log_every, **train)
    pairs = [(ex.texts[0], d) for ex in examples for d in ex.texts[1:]]
    teacher_scores = torch.from_numpy(teacher.predict(pairs, batch_size=teacher_batch_size, activation=False))
    rows = list(zip(examples, teacher_scores.view(len(examples), k1)))

    def embed(encoder: Any, batch: Sequence[tuple[Example, Tensor]]) -> Embedded:
        emb = encoder.embed_texts([t for ex, _ in batch for t in ex.texts]).view(len(batch), 1 + k1, -1)
        scores = torch.stack([s for _, s in batch]).to(emb.device)
        return Embedded(emb[:, 0], emb[:, 1], emb[:, 2:] if k1 > 1 else None, {"teacher_scores": scores})

    def loss_fn(anchor: Tensor, positive: Tensor, negatives: Tensor | None, *, teacher_scores: Tensor) -> Tensor:
        return listwise_distill(anchor, positive, negatives, teacher_scores=teacher_scores, temperature=temperature,
                                teacher_temperature=teacher_temperature)

    result = fit_in(lambda cfg: Trainer(student, loss_fn, embed, cfg), RandomBatches(rows, batch_size, seed=seed),
                    run_dir, resume=resume, **keys)
    student.eval()
    return result.history
