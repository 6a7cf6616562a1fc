"""Embedding geometry: alignment and uniformity (Wang & Isola, ICML 2020), anisotropy, effective rank.

SimCSE (Gao et al., 2021) measures alignment on STS-B pairs scored above 4 and uniformity
on all STS-B sentences; ``stsb_geometry`` does the same. Anisotropy is the mean cosine
of random pairs (Ethayarajh, 2019); effective rank is the exponential of the entropy of
the normalised singular values (Roy & Vetterli, 2007).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..losses.align_uniform import alignment, uniformity


def anisotropy(emb: np.ndarray, *, pairs: int = 10_000, seed: int = 0) -> float:
    """Mean cosine similarity of ``pairs`` random pairs of distinct rows."""
    n = emb.shape[0]
    if n < 2:
        raise ValueError(f"anisotropy needs at least 2 embeddings, got {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, pairs)
    j = (i + rng.integers(1, n, pairs)) % n  # j != i
    unit = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    return float((unit[i] * unit[j]).sum(1).mean())


def effective_rank(emb: np.ndarray) -> float:
    """exp(entropy) of the singular-value distribution of the centred embeddings."""
    centred = emb - emb.mean(0, keepdims=True)
    s = np.linalg.svd(centred.astype(np.float64), compute_uv=False)
    if s.sum() == 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def geometry(positives: tuple[np.ndarray, np.ndarray], sample: np.ndarray) -> dict[str, float]:
    """Alignment of positive pairs and uniformity, anisotropy and effective rank of ``sample``."""
    a, b = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in positives)
    s = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    return {"alignment": float(alignment(a, b)), "uniformity": float(uniformity(s)),
            "anisotropy": anisotropy(sample), "effective_rank": effective_rank(sample)}


def stsb_geometry(encode: Callable[[list[str]], np.ndarray], data_dir: Any = None, *, threshold: float = 4.0,
                  max_sentences: int = 2000) -> dict[str, float]:
    """SimCSE's measurement on STS-B test: alignment over pairs scored > ``threshold``, the rest over sentences."""
    from .senteval import load_sts_task

    task = load_sts_task("STSBenchmark", data_dir=data_dir)
    pos = [p for p, s in zip(task.pairs, task.scores) if s > threshold]
    sentences: Sequence[str] = sorted({t for pair in task.pairs for t in pair})[:max_sentences]
    left = encode([p[0] for p in pos])
    right = encode([p[1] for p in pos])
    return geometry((left, right), encode(list(sentences)))
