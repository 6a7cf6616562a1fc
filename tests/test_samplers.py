"""Grouped samplers (single_source, clustered, mined_batches): coverage, grouping, determinism, resume."""

from __future__ import annotations

import numpy as np
import pytest

from contrastkit.samplers import GroupedBatches, community_groups, kmeans_groups


def _blobs(n_per: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(8)[:3] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((n_per, 8)) for c in centers])
    return x, np.repeat(np.arange(3), n_per)


def test_batches_stay_within_groups_and_cover_every_example():
    groups = [0] * 16 + [1] * 8 + [2] * 8
    src = GroupedBatches(list(range(32)), groups, batch_size=8, seed=3)
    batches = list(src.batches(0))
    assert sorted(i for b in batches for i in b) == list(range(32))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)


def test_tails_of_groups_form_mixed_batches_and_singletons_are_dropped():
    groups = [0] * 10 + [1] * 5  # tails: 2 of group 0, 5 of group 1 -> one mixed batch of 7
    src = GroupedBatches(list(range(15)), groups, batch_size=8, seed=0)
    sizes = sorted(len(b) for b in src.batches(0))
    assert sizes == [7, 8]
    odd = GroupedBatches(list(range(9)), [0] * 9, batch_size=8, seed=0)
    assert [len(b) for b in odd.batches(0)] == [8]  # a final batch of one is dropped


def test_groups_per_batch_mixes_that_many_groups():
    groups = [g for g in range(4) for _ in range(8)]
    src = GroupedBatches(list(range(32)), groups, batch_size=8, seed=1, groups_per_batch=2)
    for b in src.batches(0):
        counts = np.bincount([groups[i] for i in b], minlength=4)
        assert sorted(counts[counts > 0]) == [4, 4]


def test_order_depends_only_on_seed_and_epoch_and_resumes_exactly():
    groups = [i % 3 for i in range(40)]
    a = GroupedBatches(list(range(40)), groups, 4, seed=7)
    b = GroupedBatches(list(range(40)), groups, 4, seed=7)
    assert list(a.batches(2)) == list(b.batches(2))
    assert list(a.batches(2))[3:] == list(b.batches(2, start=3))
    assert list(a.batches(0)) != list(a.batches(1))
    assert list(GroupedBatches(list(range(40)), groups, 4, seed=8).batches(0)) != list(a.batches(0))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="one group id per example"):
        GroupedBatches([1, 2, 3], [0, 0], 2)
    with pytest.raises(ValueError, match="groups_per_batch"):
        GroupedBatches([1, 2, 3], [0, 0, 0], 2, groups_per_batch=3)


def test_kmeans_and_community_groups_recover_blobs():
    x, truth = _blobs()
    for labels in (kmeans_groups(x, 3, seed=0), community_groups(x, neighbors=5, community_size=20, seed=0)):
        assert len(set(labels)) == 3
        for g in range(3):  # each true blob maps to one label
            assert len(set(labels[truth == g])) == 1
    assert (community_groups(x, 5, 20, seed=0) == community_groups(x, 5, 20, seed=0)).all()
