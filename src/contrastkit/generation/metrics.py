"""The open-ended generation metrics of the contrastive decoding papers.

* :func:`rep_n`, :func:`diversity`: repetition and diversity as SimCTG (Su et al., 2022, "A Contrastive Framework
  for Neural Text Generation") measures them on whitespace tokens: ``rep-n = 100 * (1 - unique n-grams / all
  n-grams)``, the unique n-grams counted within each text and both counts summed over the texts;
  ``diversity = prod_{n=2..4} (1 - rep-n / 100)``.
* :func:`coherence`: SimCTG's coherence (Su & Collier, 2023, "Contrastive Search Is What You Need For Neural Text
  Generation"): the mean cosine between the sentence embeddings of each prompt and its continuation, here from a
  contrastkit :class:`~contrastkit.encoders.Encoder` (the paper used SimCSE).
* :func:`mauve`: MAUVE (Pillutla et al., 2021, "MAUVE: Measuring the Gap Between Neural Text and Human Text using
  Divergence Frontiers") from the ``mauve-text`` package, fed contrastkit embeddings as ``p_features`` (human text)
  and ``q_features`` (generated text) instead of GPT-2-large features (which would need a download).
  Install it with ``pip install 'contrastkit[generation]'``. Scores depend on the featurizer: compare only numbers
  computed with the same encoder.
* :func:`generation_perplexity`: perplexity of the continuations under a causal LM (the expert), given the prompts.
* :func:`token_self_similarity`: the isotropy measure of SimCTG's figure: the mean cosine between the
  representations of the different tokens of one text (lower = more isotropic), averaged over texts.
* :func:`tokens_per_second`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

Tokenize = Callable[[str], Sequence[str]]


def _words(text: str) -> list[str]:
    return text.strip().split()


def ngram_counts(texts: Sequence[str], n: int, tokenize: Tokenize = _words) -> tuple[int, int]:
    """``(unique, total)`` n-grams, the unique ones counted within each text, both summed over ``texts``."""
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    unique = total = 0
    for text in texts:
        toks = list(tokenize(text))
        grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
        unique += len(set(grams))
        total += len(grams)
    return unique, total


def rep_n(texts: Sequence[str], n: int, tokenize: Tokenize = _words) -> float:
    """SimCTG's rep-n in %: ``100 * (1 - unique / total)`` n-grams over ``texts`` (0 when no text has n tokens)."""
    unique, total = ngram_counts(texts, n, tokenize)
    return 0.0 if total == 0 else 100.0 * (1.0 - unique / total)


def diversity(texts: Sequence[str], tokenize: Tokenize = _words, ns: Sequence[int] = (2, 3, 4)) -> float:
    """SimCTG's diversity: ``prod_n (1 - rep-n / 100)`` over n = 2, 3, 4 (a fraction in [0, 1])."""
    return float(np.prod([1.0 - rep_n(texts, n, tokenize) / 100.0 for n in ns]))


def repetition_report(texts: Sequence[str], tokenize: Tokenize = _words) -> dict[str, float]:
    """``{"rep-2", "rep-3", "rep-4"}`` in % and ``"diversity"``."""
    out = {f"rep-{n}": rep_n(texts, n, tokenize) for n in (2, 3, 4)}
    out["diversity"] = float(np.prod([1.0 - out[f"rep-{n}"] / 100.0 for n in (2, 3, 4)]))
    return out


def _check_pairs(a: Sequence[Any], b: Sequence[Any], what: str) -> None:
    if len(a) != len(b) or not a:
        raise ConfigError(f"{what}: need equally many, at least one (got {len(a)} and {len(b)})")


def coherence(encoder: Any, prompts: Sequence[str], continuations: Sequence[str], *, batch_size: int = 64,
              per_item: bool = False) -> float | list[float]:
    """SimCTG's coherence: mean cosine of ``encoder``'s embeddings of each prompt and its continuation
    (``per_item``: the list of cosines). ``encoder``: anything with ``encode(texts, batch_size=...)``."""
    _check_pairs(prompts, continuations, "coherence")
    a = np.asarray(encoder.encode(list(prompts), batch_size=batch_size), dtype=np.float64)
    b = np.asarray(encoder.encode(list(continuations), batch_size=batch_size), dtype=np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return [float(x) for x in cos] if per_item else float(cos.mean())


def mauve(p_features: Any, q_features: Any, *, num_buckets: int | str = "auto", seed: int = 25,
          **kwargs: Any) -> Any:
    """MAUVE of two feature sets (``p``: human text, ``q``: generated text), ``mauve.compute_mauve`` with the
    features given (nothing is downloaded); returns its result (``.mauve`` is the score). ``num_buckets``:
    k-means clusters (``"auto"``: n / 10, the package's default)."""
    try:
        import mauve as mauve_text
    except ImportError as err:
        raise ConfigError("MAUVE needs the mauve-text package: pip install 'contrastkit[generation]'") from err
    p, q = np.asarray(p_features, dtype=np.float32), np.asarray(q_features, dtype=np.float32)
    if p.ndim != 2 or q.ndim != 2 or p.shape[1] != q.shape[1]:
        raise ConfigError(f"mauve: features must be (n, d) with the same d, got {p.shape} and {q.shape}")
    return mauve_text.compute_mauve(p_features=p, q_features=q, num_buckets=num_buckets, seed=seed,
                                    verbose=False, **kwargs)


def mauve_texts(encoder: Any, human: Sequence[str], generated: Sequence[str], *, batch_size: int = 64,
                **kwargs: Any) -> float:
    """MAUVE of ``generated`` against ``human`` text with ``encoder``'s embeddings as the features."""
    p = encoder.encode(list(human), batch_size=batch_size)
    q = encoder.encode(list(generated), batch_size=batch_size)
    return float(mauve(p, q, **kwargs).mauve)


@torch.no_grad()
def generation_perplexity(model: Any, tokenizer: Any, prompts: Sequence[str], continuations: Sequence[str], *,
                          batch_size: int = 16, add_special_tokens: bool = True) -> float:
    """Perplexity of the continuations under the causal LM ``model``, each conditioned on its prompt:
    ``exp(sum of the continuation tokens' NLL / their number)`` (the prompt tokens are not scored). Prompts are
    tokenized as ``generate()`` does, continuations without special tokens, and the two id lists joined."""
    _check_pairs(prompts, continuations, "generation_perplexity")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nll, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        rows = []
        for p, c in zip(prompts[start:start + batch_size], continuations[start:start + batch_size]):
            pi = tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]
            ci = tokenizer(c, add_special_tokens=False)["input_ids"]
            rows.append((pi, ci))
        width = max(len(pi) + len(ci) for pi, ci in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, (pi, ci) in enumerate(rows):
            seq = pi + ci
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
            if ci:
                labels[r, len(pi):len(seq)] = torch.tensor(ci)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        target = labels[:, 1:].to(device)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                               reduction="sum")
        nll += float(loss)
        count += int((target != -100).sum())
    if count == 0:
        raise ConfigError("generation_perplexity: every continuation is empty")
    return math.exp(nll / count)


def self_similarity(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per text, the mean cosine between the representations of its different tokens: ``hidden`` ``(B, T, d)``,
    ``attention_mask`` ``(B, T)`` (padding excluded); returns ``(B,)`` (NaN for a text of one token)."""
    h = F.normalize(hidden.float(), dim=-1)
    sim = h @ h.transpose(1, 2)
    real = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device) if attention_mask is None \
        else attention_mask.bool()
    eye = torch.eye(hidden.shape[1], dtype=torch.bool, device=hidden.device)
    pairs = real[:, :, None] & real[:, None, :] & ~eye
    return (sim * pairs).sum((1, 2)) / pairs.sum((1, 2))


@torch.no_grad()
def token_self_similarity(model: Any, tokenizer: Any, texts: Sequence[str], *, layer: int = -1,
                          batch_size: int = 16, max_length: int = 256,
                          skip_special_tokens: bool = True) -> dict[str, float]:
    """SimCTG's isotropy measure over ``texts``: each text's mean pairwise cosine self-similarity of its token
    representations (``layer`` of ``hidden_states``; -1 = the last layer, after the final norm in transformers'
    models), averaged over the texts (``mean``) with its standard deviation (``std``). A BOS/EOS token, whose
    state is the same in every text, is left out with ``skip_special_tokens``."""
    device = next(model.parameters()).device
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    values: list[float] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        mask = enc["attention_mask"].bool()
        if skip_special_tokens and special.numel():
            mask &= ~torch.isin(enc["input_ids"], special)
        out = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                    output_hidden_states=True)
        sims = self_similarity(out.hidden_states[layer], mask.to(device))
        values += [float(x) for x in sims if not math.isnan(float(x))]
    if not values:
        raise ConfigError("token_self_similarity: no text has two tokens")
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "texts": len(values)}


def tokens_per_second(tokens: int | Sequence[Any], seconds: float) -> float:
    """Generated tokens per second; ``tokens``: a count, or completions (``.token_ids``) / token lists."""
    n = tokens if isinstance(tokens, int) else sum(len(getattr(t, "token_ids", t)) for t in tokens)
    if seconds <= 0:
        raise ConfigError(f"seconds must be > 0, got {seconds}")
    return n / seconds


__all__ = ["coherence", "diversity", "generation_perplexity", "mauve", "mauve_texts", "ngram_counts", "rep_n",
           "repetition_report", "self_similarity", "token_self_similarity", "tokens_per_second"]
