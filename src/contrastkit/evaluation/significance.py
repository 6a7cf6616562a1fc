"""Bootstrap confidence intervals for STS Spearman and a paired bootstrap test between two models.

Resampling pairs with replacement (Efron & Tibshirani, 1993); the paired test resamples the same
pairs for both models, as is usual for comparing systems on one test set (Koehn, 2004).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _spearman_rows(sims: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman x 100 of each row of ``sims`` (B, n) against the matching row of ``gold``."""
    rs = np.apply_along_axis(rankdata, 1, sims)
    rg = np.apply_along_axis(rankdata, 1, gold)
    rs -= rs.mean(1, keepdims=True)
    rg -= rg.mean(1, keepdims=True)
    denom = np.sqrt((rs**2).sum(1) * (rg**2).sum(1))
    return 100 * np.divide((rs * rg).sum(1), denom, out=np.zeros(len(rs)), where=denom > 0)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    if n < 3:
        raise ValueError(f"bootstrap needs at least 3 pairs, got {n}")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(sims: np.ndarray, gold: np.ndarray, *, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman x 100 between similarities and gold scores."""
    sims, gold = np.asarray(sims, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    idx = _resamples(len(sims), n_boot, seed)
    stats = _spearman_rows(sims[idx], gold[idx])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap(sims_a: np.ndarray, sims_b: np.ndarray, gold: np.ndarray, *, n_boot: int = 1000,
                     seed: int = 0) -> float:
    """One-sided p-value for "A beats B": the share of resamples in which A's Spearman is not above B's."""
    a, b, g = (np.asarray(x, dtype=np.float64) for x in (sims_a, sims_b, gold))
    if not (a.shape == b.shape == g.shape):
        raise ValueError(f"shapes differ: {a.shape}, {b.shape}, {g.shape}")
    idx = _resamples(len(g), n_boot, seed)
    diff = _spearman_rows(a[idx], g[idx]) - _spearman_rows(b[idx], g[idx])
    return float((diff <= 0).mean())
