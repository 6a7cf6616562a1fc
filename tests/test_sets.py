"""SetCSE (Liu, ICLR 2024, arXiv 2404.17606): set similarity, intersection, difference and series on hand-built
vectors, following the paper (X ∩ S: X ranked by Sim(., S) descending; X \\ T: ascending; series left to right,
each step on the previous result); the inter-set loss by hand; fine-tuning and the set-operation evaluation
(accuracy over the pool, F1 of the top-R selection) on synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.sets import (SetCSE, build_set_task, difference, difference_scores, evaluate_set_task,
                              fine_tune_inter_set, inter_set_loss, intersection, intersection_scores, series,
                              set_embedding, set_similarity)

from conftest import check_kill_and_resume, make_sentences

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
    # X ∩ B ranks X's elements by Sim(., B), descending: c1 1, c2 .7071, c4 .3162, then the tie c0/c3
    np.testing.assert_allclose(intersection_scores(C, B), [0, 1, S2, 0, 1 / math.sqrt(10)], atol=1e-12)
    assert intersection(C, B).tolist() == [1, 2, 4, 0, 3]
    # two example sets in one step: sum of similarities c0 1, c1 1, c2 1.4142, c3 -1, c4 1.2649
    np.testing.assert_allclose(intersection_scores(C, A, B), [1, 1, 2 * S2, -1, 4 / math.sqrt(10)], atol=1e-12)
    assert intersection(C, A, B).tolist() == [2, 4, 0, 1, 3]
    assert intersection(C, A, B, k=2).tolist() == [2, 4]
    with pytest.raises(ValueError):
        intersection(C)


def test_intersection_does_not_commute() -> None:
    # P ∩ Q is a subset of P ranked by Sim(., Q); Q ∩ P is a subset of Q ranked by Sim(., P)
    P = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, -1.0]])
    Q = np.array([[0.0, 1.0], [1.0, 2.0]])
    # Sim(p, Q) = mean of cos to (0, 1) and (1, 2)/sqrt5: p0 .2236, p1 .8279, p2 -.5117
    np.testing.assert_allclose(intersection_scores(P, Q), [0.2236068, 0.8278950, -0.5116673], atol=1e-6)
    assert intersection(P, Q).tolist() == [1, 0, 2]
    # Sim(q, P) = q_hat . (.8047, 0): q0 0, q1 .3599
    np.testing.assert_allclose(intersection_scores(Q, P), [0.0, 0.3598897], atol=1e-6)
    assert intersection(Q, P).tolist() == [1, 0]
    assert P[intersection(P, Q, k=1)].tolist() == [[1.0, 1.0]] and Q[intersection(Q, P, k=1)].tolist() == [[1.0, 2.0]]


def test_difference_by_hand() -> None:
    # X \ B ranks X by Sim(., B) ascending (no positive set): c0 0, c3 0 (tie, candidate order), c4, c2, c1
    np.testing.assert_allclose(difference_scores(C, B), [0, -1, -S2, 0, -1 / math.sqrt(10)], atol=1e-12)
    assert difference(C, B).tolist() == [0, 3, 4, 2, 1]
    # X \ A: Sim(., A) c0 1, c1 0, c2 .7071, c3 -1, c4 .9487 -> c3, c1, c2, c4, c0
    assert difference(C, A).tolist() == [3, 1, 2, 4, 0]
    # X \ A \ B in one step: sums c0 1, c1 1, c2 1.4142, c3 -1, c4 1.2649, ascending -> c3, c0, c1, c4, c2
    assert difference(C, A, B).tolist() == [3, 0, 1, 4, 2]
    assert difference(C, A, B, k=1).tolist() == [3]
    with pytest.raises(ValueError):
        difference(C)


def test_series_runs_left_to_right() -> None:
    D = np.array([[-1.0, 1.0]])  # Sim(., D): c0 -.7071, c1 .7071, c2 0, c3 .7071, c4 -.4472
    # X ∩ B keeps its best 3 (c1, c2, c4); then \ D orders them by Sim(., D) ascending: c4, c2, c1
    assert series(C, [("and", B), ("minus", D)], keep=3).tolist() == [4, 2, 1]
    # the other order: X \ D keeps c0 .7071, c4 .4472, c2 0 (by -Sim); then ∩ B: c2 .7071, c4 .3162, c0 0
    assert series(C, [("minus", D), ("and", B)], keep=3).tolist() == [2, 4, 0]
    # each step ranks by its own operand only: with nothing cut, the last operation alone decides
    assert series(C, [("and", B), ("minus", D)], keep=5).tolist() == difference(C, D).tolist() == [0, 4, 2, 1, 3]
    assert series(C, [("minus", B)], keep=1).tolist() == difference(C, B).tolist()
    # one size per intermediate step: X ∩ A keeps c0, c4, c2, c1; ∩ B keeps c1, c2; \ D: c2, c1
    assert series(C, [("and", A), ("and", B), ("minus", D)], keep=[4, 2]).tolist() == [2, 1]
    with pytest.raises(ValueError, match="unknown set operation"):
        series(C, [("or", B)], keep=2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="keep"):
        series(C, [("and", A), ("and", B)], keep=[1, 2])


def test_setcse_on_texts_with_a_lookup_encoder() -> None:
    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "ab": [1.0, 1.0], "-a": [-1.0, 0.0], "aab": [3.0, 1.0],
             "-ab": [-1.0, 1.0]}
    sc = SetCSE(lambda texts: np.array([table[t] for t in texts]))
    cands = ["a", "b", "ab", "-a", "aab"]
    assert [i for i, _ in sc.intersection(cands, ["a", "a"], ["b"])] == [2, 4, 0, 1, 3]
    res = sc.difference(cands, ["b"], k=2)  # least similar to "b" first, with Sim(c, {b})
    assert [i for i, _ in res] == [0, 3] and res[0][1] == pytest.approx(0.0)
    assert sc.series(cands, [("and", ["b"]), ("minus", ["-ab"])], keep=3) == [4, 2, 1]
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


def test_inter_set_fine_tuning_resumes_after_a_kill(tiny_bert: Path, tmp_path: Path, one_thread: None,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.encoders import Encoder
    from contrastkit.sets import train

    sets = [make_sentences(5, seed=1), make_sentences(5, seed=2), make_sentences(5, seed=3)]

    def run(run_dir: Path, resume: bool) -> dict[str, torch.Tensor]:
        enc = Encoder.from_pretrained(str(tiny_bert))
        fine_tune_inter_set(enc, sets, steps=6, per_set=3, lr=1e-3, groups=[[0, 1], [1, 2]], log_every=1,
                            run_dir=run_dir, resume=resume, checkpoint_every=2, progress=False)
        return enc.state_dict()

    start = Encoder.from_pretrained(str(tiny_bert)).state_dict()
    check_kill_and_resume(monkeypatch, capsys, train, "inter_set_loss", run, tmp_path, start)


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
    for key in ("intersection_acc", "intersection_f1", "difference_acc", "difference_f1"):
        assert res[key] == pytest.approx(100.0), key
    assert set(res["per_pair"]["intersection"]) == {f"{a}&{b}" for a in range(3) for b in range(2)}
    assert set(res["per_pair"]["difference"]) == {f"{a}-{b}" for a in range(3) for b in range(2)}


def test_selection_metrics_by_hand() -> None:
    from contrastkit.sets.evaluate import _selection_metrics

    relevant = np.array([True, True, False, False, False, False, False, False, False, False])
    # top-2 selection {0, 2}: 1 true positive; pool predictions wrong on items 1 and 2 -> accuracy 8/10
    acc, f1 = _selection_metrics(np.array([0, 2]), relevant)
    assert acc == pytest.approx(80.0) and f1 == pytest.approx(50.0)  # F1 = 2*1 / (2 + 2)
    acc, f1 = _selection_metrics(np.array([3, 4]), relevant)
    assert acc == pytest.approx(60.0) and f1 == pytest.approx(0.0)
