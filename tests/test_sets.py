"""SetCSE: set similarity, intersection, difference and series on hand-built vectors; the inter-set loss by hand;
fine-tuning and the set-operation evaluation on synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.sets import (SetCSE, build_set_task, difference, difference_scores, evaluate_set_task,
                              fine_tune_inter_set, inter_set_loss, intersection, intersection_scores, series,
                              set_embedding, set_similarity)

from conftest import make_sentences

S2 = 1 / math.sqrt(2)
A = np.array([[1.0, 0.0], [2.0, 0.0]])  # scale does not matter: members are normalised
B = np.array([[0.0, 1.0]])
C = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [3.0, 1.0]])
# Sim(., A) = x_1 / |x|, Sim(., B) = x_2 / |x|:
#   c0 (1, 0): 1, 0      c1 (0, 1): 0, 1      c2 (1, 1): .7071, .7071
#   c3 (-1, 0): -1, 0    c4 (3, 1): .9487, .3162


def test_set_embedding_and_similarity_by_hand() -> None:
    np.testing.assert_allclose(set_embedding(A), [1.0, 0.0])
    mixed = np.array([[1.0, 0.0], [0.0, 5.0]])
    np.testing.assert_allclose(set_embedding(mixed), [0.5, 0.5])
    # mean cosine to the members: c2 -> (.7071 + .7071) / 2, c0 -> (1 + 0) / 2, c3 -> (-1 + 0) / 2
    np.testing.assert_allclose(set_similarity(C[[2, 0, 3]], mixed), [S2, 0.5, -0.5], atol=1e-12)
    with pytest.raises(ValueError, match="dim"):
        set_similarity(C, np.ones((2, 3)))


def test_intersection_by_hand() -> None:
    # sums: c0 1, c1 1, c2 1.4142, c3 -1, c4 1.2649 -> c2, c4, then the tie c0/c1 in candidate order, c3
    np.testing.assert_allclose(intersection_scores(C, A, B), [1, 1, 2 * S2, -1, 4 / math.sqrt(10)], atol=1e-12)
    assert intersection(C, A, B).tolist() == [2, 4, 0, 1, 3]
    assert intersection(C, A, B, k=2).tolist() == [2, 4]
    assert intersection(C, B, A).tolist() == [2, 4, 0, 1, 3]  # intersection commutes


def test_difference_by_hand() -> None:
    # A \ B: c0 1, c1 -1, c2 0, c3 -1, c4 .6325 -> c0, c4, c2, then the tie c1/c3 in candidate order
    np.testing.assert_allclose(difference_scores(C, A, B), [1, -1, 0, -1, 2 / math.sqrt(10)], atol=1e-12)
    assert difference(C, A, B).tolist() == [0, 4, 2, 1, 3]
    # B \ A: c0 -1, c1 1, c2 0, c3 1, c4 -.6325 -> c1, c3, c2, c4, c0 (difference does not commute)
    assert difference(C, B, A).tolist() == [1, 3, 2, 4, 0]
    with pytest.raises(ValueError):
        difference(C, A)


def test_series_runs_left_to_right() -> None:
    D = np.array([[-1.0, 1.0]])  # Sim(., D): c0 -.7071, c1 .7071, c2 0, c3 .7071, c4 -.4472
    # (A ∩ B) keeps its best 3: c2 1.4142, c4 1.2649, c0 1; then minus D: c2 1.4142, c4 1.7121, c0 1.7071
    assert series(C, A, [("and", B), ("minus", D)], keep=3).tolist() == [4, 0, 2]
    # keeping everything: c1 1 - .7071 = .2929 and c3 -1 - .7071 follow
    assert series(C, A, [("and", B), ("minus", D)], keep=5).tolist() == [4, 0, 2, 1, 3]
    assert series(C, A, [("minus", B)], keep=1).tolist() == difference(C, A, B).tolist()
    with pytest.raises(ValueError, match="unknown set operation"):
        series(C, A, [("or", B)], keep=2)  # type: ignore[list-item]


def test_setcse_on_texts_with_a_lookup_encoder() -> None:
    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "ab": [1.0, 1.0], "-a": [-1.0, 0.0], "aab": [3.0, 1.0]}
    sc = SetCSE(lambda texts: np.array([table[t] for t in texts]))
    cands = ["a", "b", "ab", "-a", "aab"]
    assert [i for i, _ in sc.intersection(cands, ["a", "a"], ["b"])] == [2, 4, 0, 1, 3]
    res = sc.difference(cands, ["a"], ["b"], k=2)
    assert [i for i, _ in res] == [0, 4] and res[0][1] == pytest.approx(1.0)
    np.testing.assert_allclose(sc.similarity(["ab"], ["a", "b"]), [S2])


def test_inter_set_loss_by_hand() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    ids = torch.tensor([0, 0, 1, 1])
    # every (x, x+) pair: cos 1 to its positive, 0 to both negatives
    assert float(inter_set_loss(emb, ids, temperature=1.0)) == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    ids = torch.tensor([0, 0, 1])
    # (a1, a2): pos 0.6/0.5, neg 0; (a2, a1): pos 1.2, neg 0.8/0.5; b1 has no positive
    t1 = -math.log(math.exp(1.2) / (math.exp(1.2) + 1))
    t2 = -math.log(math.exp(1.2) / (math.exp(1.2) + math.exp(1.6)))
    assert float(inter_set_loss(emb, ids, temperature=0.5)) == pytest.approx((t1 + t2) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="two or more sets"):
        inter_set_loss(emb[:2], ids[:2])


def test_inter_set_fine_tuning_separates_the_sets(tiny_bert: Path, one_thread: None) -> None:
    from contrastkit.encoders import Encoder

    enc = Encoder.from_pretrained(str(tiny_bert))
    sets = [[s + " dog" for s in make_sentences(6, seed=1)], [s + " cat" for s in make_sentences(6, seed=2)]]

    def gap() -> float:
        e = [enc.encode(s, normalize=True) for s in sets]
        within = np.mean([(x @ x.T)[~np.eye(6, dtype=bool)].mean() for x in e])
        return float(within - (e[0] @ e[1].T).mean())

    before = gap()
    history = fine_tune_inter_set(enc, sets, steps=20, per_set=4, lr=1e-3, log_every=10)
    assert len(history) == 2 and history[-1]["loss"] < history[0]["loss"]
    assert gap() > before


def test_set_task_and_evaluation_with_a_perfect_encoder() -> None:
    texts_a = [f"q{c} x{i}" for c in range(3) for i in range(8)]
    labels_a = [c for c in range(3) for _ in range(8)]
    texts_b = [f"s{c} y{i}" for c in range(2) for i in range(8)]
    labels_b = [c for c in range(2) for _ in range(8)]
    task = build_set_task("toy", texts_a, labels_a, texts_b, labels_b, n_examples=3, pool_per_pair=4, seed=0)
    assert len(task.pool) == 3 * 2 * 4 and set(task.sets_a) == {0, 1, 2} and len(task.sets_b[1]) == 3
    examples = {s for members in [*task.sets_a.values(), *task.sets_b.values()] for s in members}
    assert not set(task.pool) & examples
    sets, groups = task.example_sets()
    assert len(sets) == 5 and groups == [[0, 1, 2], [3, 4]]

    def encode(texts: list[str]) -> np.ndarray:  # one-hot of the class words q0..q2, s0..s1
        keys = ["q0", "q1", "q2", "s0", "s1"]
        return np.array([[1.0 if k in t.split() else 0.0 for k in keys] for t in texts]) + 1e-3

    res = evaluate_set_task(encode, task)
    assert res["intersection"] == pytest.approx(100.0) and res["difference"] == pytest.approx(100.0)
    assert set(res["per_pair"]["intersection"]) == {f"{a}&{b}" for a in range(3) for b in range(2)}
