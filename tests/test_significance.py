"""Bootstrap CIs and the paired bootstrap test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from contrastkit.evaluation.significance import _spearman_rows, bootstrap_ci, paired_bootstrap


def test_row_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(3, 40)).astype(float)
    y = rng.normal(size=(3, 40))
    ours = _spearman_rows(x, y)
    for i in range(3):
        assert ours[i] == pytest.approx(100 * spearmanr(x[i], y[i]).statistic, abs=1e-9)


def test_ci_brackets_the_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 300)
    sims = gold + rng.normal(0, 1.5, 300)
    point = 100 * spearmanr(sims, gold).statistic
    lo, hi = bootstrap_ci(sims, gold, n_boot=400, seed=3)
    assert lo < point < hi and hi - lo < 20
    assert (lo, hi) == bootstrap_ci(sims, gold, n_boot=400, seed=3)
    assert bootstrap_ci(gold, gold, n_boot=50) == pytest.approx((100.0, 100.0))
    with pytest.raises(ValueError, match="at least 3"):
        bootstrap_ci([1.0, 2.0], [1.0, 2.0])


def test_paired_bootstrap_detects_a_better_model_and_not_an_equal_one():
    rng = np.random.default_rng(2)
    gold = rng.uniform(0, 5, 400)
    good = gold + rng.normal(0, 0.5, 400)
    bad = gold + rng.normal(0, 3.0, 400)
    assert paired_bootstrap(good, bad, gold, n_boot=300) < 0.01
    assert paired_bootstrap(bad, good, gold, n_boot=300) > 0.99
    assert paired_bootstrap(good, good, gold, n_boot=100) == 1.0  # never strictly better than itself
