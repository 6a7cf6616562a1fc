"""Geometry metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contrastkit.evaluation.geometry import anisotropy, effective_rank, geometry


def test_anisotropy_of_identical_and_opposite_directions():
    same = np.tile([[1.0, 2.0]], (5, 1))
    assert anisotropy(same) == pytest.approx(1.0)
    pm = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert anisotropy(pm) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        anisotropy(np.ones((1, 3)))


def test_effective_rank_of_isotropic_and_rank_one_data():
    iso = np.vstack([np.eye(4), -np.eye(4)])  # centred, four equal singular values
    assert effective_rank(iso) == pytest.approx(4.0)
    line = np.outer(np.arange(6.0), [1.0, 2.0, 3.0])
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(np.ones((3, 2))) == 0.0


def test_geometry_alignment_and_uniformity_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [0.0, 1.0]])
    g = geometry((a, b), a)
    assert g["alignment"] == pytest.approx(1.0)  # (||e1-e2||^2 + 0) / 2 = 2/2
    assert g["uniformity"] == pytest.approx(math.log(math.exp(-2 * 2.0)))  # one pair at squared distance 2
