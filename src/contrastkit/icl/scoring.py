"""Scoring label words with a causal LM: log-likelihood of each continuation given a prompt, and contextual
calibration (Zhao et al., 2021, "Calibrate Before Use: Improving Few-Shot Performance of Language Models", ICML).

A continuation's score is ``sum_t log p(c_t | prompt, c_<t)`` over its tokens. The prompt is tokenized with the
tokenizer's special tokens (BOS where the model has one) and each continuation separately without them, so a
label's tokens never merge with the prompt's last token. Sequences are right-padded: in a causal LM the real
tokens never attend to padding that follows them, and their positions stay 0..n-1, so batched scores equal
one-sequence scores.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["calibrate_content_free", "continuation_logprobs", "normalize_label_scores"]


def _right_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def _log_probs_at(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: list[list[int]]) -> list[torch.Tensor]:
    """Per row, the log-softmax of the next-token logits at its ``positions`` (``(len(positions[r]), vocab)``).

    Only the wanted positions go through the LM head (``logits_to_keep``): with Gemma-3's 262k vocabulary the
    head over every position costs more than the transformer itself."""
    wanted = sorted({p for row in positions for p in row})
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        keep = torch.tensor(wanted, device=ids.device)
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        column = {p: i for i, p in enumerate(wanted)}
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits
        column = {p: p for p in wanted}
    return [torch.log_softmax(logits[r, [column[p] for p in row]].float(), dim=-1) for r, row in enumerate(positions)]


@torch.no_grad()
def continuation_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int = 8) -> np.ndarray:
    """``(len(prompts), len(continuations))`` summed log-probabilities of each continuation after each prompt.

    When every continuation is one token, one forward pass per prompt batch reads them all from the last
    position's distribution; otherwise every (prompt, continuation) sequence is scored.
    """
    if not continuations:
        raise ValueError("no continuations to score")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ctx = [list(tokenizer(p)["input_ids"]) for p in prompts]
    cont = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in continuations]
    if any(len(c) == 0 for c in cont):
        raise ValueError(f"a continuation tokenizes to nothing: {list(continuations)!r}")
    out = np.zeros((len(prompts), len(cont)), dtype=np.float64)
    if all(len(c) == 1 for c in cont):
        first = torch.tensor([c[0] for c in cont], device=device)
        for s in range(0, len(ctx), batch_size):
            rows = ctx[s:s + batch_size]
            ids, mask = _right_padded(rows, pad_id)
            logp = _log_probs_at(model, ids.to(device), mask.to(device), [[len(r) - 1] for r in rows])
            out[s:s + len(rows)] = torch.cat(logp)[:, first].cpu().numpy()
        return out
    pairs = [(i, j) for i in range(len(ctx)) for j in range(len(cont))]
    per_batch = max(1, batch_size)
    for s in range(0, len(pairs), per_batch):
        chunk = pairs[s:s + per_batch]
        rows = [ctx[i] + cont[j] for i, j in chunk]
        ids, mask = _right_padded(rows, pad_id)
        spans = [list(range(len(ctx[i]) - 1, len(ctx[i]) - 1 + len(cont[j]))) for i, j in chunk]
        logp = _log_probs_at(model, ids.to(device), mask.to(device), spans)
        for r, (i, j) in enumerate(chunk):
            targets = torch.tensor(cont[j], device=device)
            out[i, j] = float(logp[r].gather(1, targets[:, None]).sum())
    return out


def normalize_label_scores(logprobs: np.ndarray) -> np.ndarray:
    """Label log-probabilities renormalised over the label set (log-softmax along the last axis)."""
    x = np.asarray(logprobs, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def calibrate_content_free(logprobs: np.ndarray, content_free_logprobs: np.ndarray) -> np.ndarray:
    """Contextual calibration: ``log p(y | x) - log p(y | content-free x)``, both renormalised over labels.

    Zhao et al.'s ``W = diag(p_cf)^-1, b = 0``: the argmax of ``p / p_cf``. ``content_free_logprobs`` is one row
    per prompt (the same demonstrations with a content-free input such as "N/A"), or the mean over several
    content-free inputs.
    """
    return normalize_label_scores(logprobs) - normalize_label_scores(content_free_logprobs)
