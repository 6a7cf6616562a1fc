"""contrastkit.icl: selectors on hand-computed cases, LM label scoring against a direct log-likelihood
computation with a tiny random Llama, the harness end to end, the task splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama, needs_shared_data

from contrastkit.errors import ConfigError
from contrastkit.icl import (
    ClassificationTask,
    RewriteTask,
    build_prompt,
    calibrate_content_free,
    chrf,
    continuation_logprobs,
    dpp_log_det,
    evaluate_classification,
    evaluate_rewriting,
    greedy_dpp_map,
    load_classification_task,
    normalize_label_scores,
    select_dpp,
    select_for_queries,
    select_knn,
    select_label_coverage,
    select_mmr,
    select_random,
    select_sequential,
)


def unit(deg: float) -> list[float]:
    """A 2-d unit vector at ``deg`` degrees."""
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# ----------------------------------------------------------------------------- selectors
def test_knn_order_and_ties():
    q = [1.0, 0.0]
    pool = [[0.0, 1.0], [1.0, 0.1], [1.0, 1.0], [-1.0, 0.0], [2.0, 0.2]]  # cos: 0, .995, .707, -1, .995
    assert select_knn(q, pool, 3) == [1, 4, 2]  # 1 and 4 tie (same direction): lower index first
    assert select_knn(np.array(q), torch.tensor(pool), 10) == [1, 4, 2, 0, 3]
    with pytest.raises(ConfigError):
        select_knn([1.0, 0.0, 0.0], pool, 2)


def test_mmr_hand_computed_order():
    # q at 0 deg; A 5, B 8, C -30, D 90.  rel: A .99619, B .99027, C .86603, D 0.
    # step 1: A.  step 2 (lam .5), redundancy = sim to A: B cos3 .99863, C cos35 .81915, D cos85 .08716
    #   B .5(.99027-.99863) = -.0042, C .5(.86603-.81915) = +.0234, D .5(0-.08716) = -.0436 -> C
    # step 3: red B max(.99863, cos38) -> -.0042, D max(.08716, cos120) -> -.0436 -> B; then D.
    q = unit(0)
    pool = [unit(5), unit(8), unit(-30), unit(90)]
    assert select_mmr(q, pool, 4, lam=0.5) == [0, 2, 1, 3]
    assert select_knn(q, pool, 4) == [0, 1, 2, 3]
    assert select_mmr(q, pool, 4, lam=1.0) == select_knn(q, pool, 4)  # lam = 1 is kNN
    assert select_mmr(q, pool, 2, lam=0.5, n_candidates=2) == [0, 1]  # only the 2 nearest are candidates
    with pytest.raises(ConfigError):
        select_mmr(q, pool, 2, lam=1.5)


def test_greedy_dpp_map_on_a_hand_kernel():
    # Items 0 and 1 are near-duplicates (det of their pair .19), item 2 is independent but less "relevant" (.5).
    kernel = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 0.5]])
    assert greedy_dpp_map(kernel, 2) == [0, 2]  # gains after 0: item 1 -> .19, item 2 -> .5
    assert dpp_log_det(kernel, [0, 2]) == pytest.approx(math.log(0.5))
    assert dpp_log_det(kernel, [0, 1]) == pytest.approx(math.log(0.19))
    assert greedy_dpp_map(kernel, 3) == [0, 2, 1]
    # rank-1 kernel: after the first item nothing adds volume -> greedy stops early
    v = np.array([1.0, 2.0, 3.0])
    assert greedy_dpp_map(np.outer(v, v), 3) == [2]


def test_greedy_dpp_map_equals_naive_greedy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 5))
    kernel = x @ x.T
    chosen: list[int] = []
    for _ in range(4):  # naive greedy: the largest log det of the extended set
        best = max((i for i in range(7) if i not in chosen), key=lambda i: dpp_log_det(kernel, chosen + [i]))
        chosen.append(best)
    assert greedy_dpp_map(kernel, 4) == chosen


def test_select_dpp_hand_case_trades_relevance_for_diversity():
    # q = e1; A = e1 (sim 1), B near-duplicate of A (sim .99), C = (.8, 0, .6) (sim .8).
    # trade_off .5: r = exp((sim - 1) / 1): rA 1, rB .990, rC .819.  S: AB .99, AC .8, BC .792.
    # after A: gain(B) = rB^2 (1 - .99^2) = .0195, gain(C) = rC^2 (1 - .8^2) = .241 -> C.
    b = np.array([0.99, math.sqrt(1 - 0.99**2), 0.0])
    pool = np.array([[1.0, 0.0, 0.0], b, [0.8, 0.0, 0.6]])
    q = np.array([1.0, 0.0, 0.0])
    assert select_knn(q, pool, 2) == [0, 1]
    assert select_dpp(q, pool, 2, trade_off=0.5) == [0, 2]
    # a small trade_off is (nearly) relevance only: trade_off .005 -> r = exp(100 (sim - 1)):
    # gain(B) = e^-2 * .0199 = .0027 beats gain(C) = e^-40 * .36
    assert select_dpp(q, pool, 2, trade_off=0.005) == [0, 1]
    # the kernel's rank (3 dims) runs out: the nearest remaining candidates fill the set
    pool5 = np.vstack([pool, [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])
    out = select_dpp(q, pool5, 5, trade_off=0.5)
    assert sorted(out) == [0, 1, 2, 3, 4] and out[0] == 0


def test_label_coverage_hand_case():
    sims = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = ["a", "a", "a", "b", "c", "b"]
    pool = [unit(math.degrees(math.acos(s))) for s in sims]
    q = unit(0)
    assert select_knn(q, pool, 3) == [0, 1, 2]
    assert select_label_coverage(q, pool, 3, labels=labels) == [0, 3, 4]
    assert select_label_coverage(q, pool, 4, labels=labels) == [0, 1, 3, 4]  # a, b, c covered, then nearest
    assert select_label_coverage(q, pool, 2, labels=labels) == [0, 3]
    with pytest.raises(ConfigError):
        select_label_coverage(q, pool, 2, labels=labels[:3])


def test_sequential_greedy_and_beam_on_a_hand_scorer():
    pool = [unit(0), unit(10), unit(20), unit(80)]
    q = unit(0)
    value = {0: 1.0, 1: 0.9, 2: 0.1, 3: 5.0}
    calls: list[list[int]] = []

    def score(seq: list[int]) -> float:
        calls.append(list(seq))
        bonus = 2.0 if seq[-2:] == [1, 2] else 0.0  # 2 is good only right after 1 (conditioned on the chosen)
        return sum(value[i] for i in seq) + bonus

    # candidates: the 3 nearest (3 is far: never a candidate, despite its value)
    assert select_sequential(q, pool, 2, score=score, n_candidates=3) == [0, 1]  # greedy: [0] then [0,1] 1.9
    assert [0, 2] in calls and [0, 1] in calls and all(3 not in c for c in calls)
    assert select_sequential(q, pool, 2, score=score, n_candidates=3, beam=2) == [1, 2]  # 0.9 + 0.1 + 2
    assert select_sequential(q, pool, 1, score=score, n_candidates=4) == [3]
    many = select_sequential(q, pool, 2, score_many=lambda seqs: [score(x) for x in seqs], n_candidates=3, beam=2)
    assert many == [1, 2]
    with pytest.raises(ConfigError):
        select_sequential(q, pool, 2, n_candidates=3)


def test_random_is_seeded_and_distinct():
    pool = np.eye(6)
    a = select_random(pool[0], pool, 4, rng=3)
    assert a == select_random(pool[0], pool, 4, rng=3) and len(set(a)) == 4
    assert sorted(select_random(pool[0], pool, 10, rng=0)) == list(range(6))
    sel = select_for_queries("random", pool[:3], pool, 2, seed=1)
    assert sel == select_for_queries("random", pool[:3], pool, 2, seed=1) and len(sel) == 3
    assert select_for_queries("knn", pool[:2], pool, 0) == [[], []]
    with pytest.raises(ConfigError):
        select_for_queries("nope", pool[:1], pool, 1)


# ----------------------------------------------------------------------------- LM scoring
TEMPLATES = ("Review: Sentiment: Input: Type: N/A KJV: WEB:",)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    from contrastkit.lm import load_causal_lm

    path = build_tiny_llama(tmp_path_factory.mktemp("icl-llama"), texts=TEMPLATES)
    return load_causal_lm(path)


def direct_logprob(model, tok, prompt: str, cont: str) -> float:
    """The continuation's log-likelihood from one unbatched forward pass over prompt + continuation."""
    ctx = tok(prompt)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx + c])).logits[0]
    lp = torch.log_softmax(logits.float(), -1)
    return float(sum(lp[len(ctx) - 1 + t, tok_id] for t, tok_id in enumerate(c)))


def test_continuation_logprobs_equal_direct_computation(llama):
    model, tok = llama
    prompts = ["Review: a man is playing\nSentiment:", "Review: the dog\nSentiment: happy\n\nReview: sad cat is "
               "sleeping in the house\nSentiment:", "Input: red car\nType:"]
    for conts in ([" happy", " sad"], [" happy", " big red", " sad"]):  # one-token fast path; multi-token path
        want = np.array([[direct_logprob(model, tok, p, c) for c in conts] for p in prompts])
        for bs in (1, 2, 8):
            got = continuation_logprobs(model, tok, prompts, conts, batch_size=bs)
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_calibration_math():
    lp = np.log(np.array([[0.6, 0.2], [0.3, 0.1]]))
    cf = np.log(np.array([[0.75, 0.25], [0.5, 0.5]]))
    cal = calibrate_content_free(lp, cf)
    # row 0: p = (.75, .25), p_cf = (.75, .25) -> equal after calibration; row 1: p = (.75, .25) / (.5, .5)
    np.testing.assert_allclose(np.exp(normalize_label_scores(cal)), [[0.5, 0.5], [0.75, 0.25]], atol=1e-12)


def test_build_prompt_format():
    p = build_prompt("Review: {text}\nSentiment: {label}", [("good", "positive"), ("bad", "negative")], "fine")
    assert p == "Review: good\nSentiment: positive\n\nReview: bad\nSentiment: negative\n\nReview: fine\nSentiment:"
    assert build_prompt("KJV: {source}\nWEB: {target}", [], "x") == "KJV: x\nWEB:"
    with pytest.raises(ConfigError):
        build_prompt("{label} first: {text}", [], "x")


def _toy_task() -> ClassificationTask:
    pos = ["happy dog playing", "happy child reads book", "happy song and dance", "the sun is happy",
           "a happy cat", "happy man plays guitar"]
    neg = ["sad dog sleeping", "sad child in rain", "the sad river", "a sad woman", "sad slow car", "sad music"]
    pool_texts, pool_labels = pos[:4] + neg[:4], [1] * 4 + [0] * 4
    return ClassificationTask("toy", "Review: {text}\nSentiment: {label}", ("sad", "happy"), pool_texts,
                              np.array(pool_labels), pos[4:] + neg[4:], np.array([1, 1, 0, 0]))


def _bow(texts: list[str]) -> np.ndarray:
    vocab = sorted({w for t in texts for w in t.split()})
    return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float) + 1e-3


def test_harness_accuracy_equals_hand_scoring(llama):
    model, tok = llama
    task = _toy_task()
    emb = _bow(task.pool_texts + task.test_texts)
    pool, test = emb[:8], emb[8:]
    for selector, calibrate in (("knn", False), ("knn", True), ("random", False), ("mmr", False)):
        res = evaluate_classification(model, tok, task, pool, test, selector=selector, k=3, seed=2,
                                      calibrate=calibrate)
        assert res.n_queries == 4 and res.metric == "accuracy"
        want_pred = []
        for sel, x in zip(res.selections, task.test_texts):
            assert len(sel) == 3
            demos = [(task.pool_texts[i], task.label_words[task.pool_labels[i]]) for i in reversed(sel)]
            s = np.array([direct_logprob(model, tok, build_prompt(task.template, demos, x), " " + w)
                          for w in task.label_words])
            if calibrate:
                cf = np.array([direct_logprob(model, tok, build_prompt(task.template, demos, "N/A"), " " + w)
                               for w in task.label_words])
                s = (s - np.logaddexp.reduce(s)) - (cf - np.logaddexp.reduce(cf))
            want_pred.append(int(np.argmax(s)))
        assert res.predictions == want_pred
        assert res.score == pytest.approx(100 * np.mean(np.array(want_pred) == task.test_labels))
    knn = evaluate_classification(model, tok, task, pool, test, selector="knn", k=3)
    assert knn.selections == [select_knn(t, pool, 3) for t in test]


def test_harness_sequential_and_label_coverage(llama):
    model, tok = llama
    task = _toy_task()
    emb = _bow(task.pool_texts + task.test_texts)
    res = evaluate_classification(model, tok, task, emb[:8], emb[8:], selector="sequential", k=2,
                                  selector_params={"n_candidates": 4})
    assert all(len(s) == 2 and len(set(s)) == 2 for s in res.selections)
    assert res.params["sequential_target"] == "neighbours"
    oracle = evaluate_classification(model, tok, task, emb[:8], emb[8:], selector="sequential", k=2,
                                     selector_params={"n_candidates": 3}, sequential_target="query")
    assert oracle.params["sequential_target"] == "query"
    for qi, (x, y) in enumerate(zip(task.test_texts, task.test_labels)):  # greedy by hand, scored directly
        cand = select_knn(emb[8 + qi], emb[:8], 3)
        chosen: list[int] = []
        for _ in range(2):
            def gold_lp(seq: list[int], x: str = x, y: int = int(y)) -> float:
                demos = [(task.pool_texts[i], task.label_words[task.pool_labels[i]]) for i in reversed(seq)]
                s = np.array([direct_logprob(model, tok, build_prompt(task.template, demos, x), " " + w)
                              for w in task.label_words])
                return float(s[y] - np.logaddexp.reduce(s))
            chosen.append(max((c for c in cand if c not in chosen), key=lambda c: gold_lp(chosen + [c])))
        assert oracle.selections[qi] == chosen
    cov = evaluate_classification(model, tok, task, emb[:8], emb[8:], selector="label_coverage", k=2)
    assert all({int(task.pool_labels[i]) for i in s} == {0, 1} for s in cov.selections)
    zero = evaluate_classification(model, tok, task, emb[:8], emb[8:], selector="knn", k=0)
    assert zero.selections == [[]] * 4
    with pytest.raises(ConfigError):
        evaluate_classification(model, tok, task, emb[:7], emb[8:])


def test_sequential_score_cache_serves_a_smaller_k(llama):
    model, tok = llama
    task = _toy_task()
    emb = _bow(task.pool_texts + task.test_texts)
    kw = dict(selector="sequential", selector_params={"n_candidates": 4})
    cache: dict = {}
    three = evaluate_classification(model, tok, task, emb[:8], emb[8:], k=3, score_cache=cache, **kw)
    filled = dict(cache)
    two = evaluate_classification(model, tok, task, emb[:8], emb[8:], k=2, score_cache=cache, **kw)
    assert cache == filled  # every score of k = 2 was already there: greedy k = 2 is k = 3's first two steps
    assert two.selections == [s[:2] for s in three.selections]
    assert two.selections == evaluate_classification(model, tok, task, emb[:8], emb[8:], k=2, **kw).selections
    assert two.predictions == evaluate_classification(model, tok, task, emb[:8], emb[8:], k=2, **kw).predictions


def test_rewriting_sequential_equals_hand_scoring(llama):
    model, tok = llama
    src = ["the man reads a book", "a dog runs in the park", "the child plays music", "a boy reads the book",
           "the man plays music", "a child reads a book"]
    tgt = ["a man reads the book", "the dog runs on the field", "a child plays a song", "the boy reads a book",
           "a man plays a song", "the child reads the book"]
    task = RewriteTask("toy", "KJV: {source}\nWEB: {target}", src[:5], tgt[:5], src[5:], tgt[5:])
    emb = _bow(src)
    cache: dict = {}
    seq = evaluate_rewriting(model, tok, task, emb[:5], emb[5:], selector="sequential", k=2, max_new_tokens=3,
                             selector_params={"n_candidates": 3}, score_cache=cache)
    order = [int(i) for i in np.argsort(-(emb[:5] @ emb[5]) / np.linalg.norm(emb[:5], axis=1), kind="stable")]
    cand, proxy = order[:3], order[3]  # the nearest pool item after the candidates stands in for the query

    def lp(s: list[int]) -> float:
        demos = [(src[i], tgt[i]) for i in reversed(s)]
        return direct_logprob(model, tok, build_prompt(task.template, demos, src[proxy]), " " + tgt[proxy])

    chosen: list[int] = []
    for _ in range(2):
        chosen.append(max((c for c in cand if c not in chosen), key=lambda c: lp(chosen + [c])))
    assert seq.selections == [chosen]
    assert len(cache) == 3 + 2  # every extension scored once, each equal to its unbatched log-likelihood
    for (qi, s), value in cache.items():
        assert qi == 0 and value == pytest.approx(lp(list(s)), abs=1e-4)


def test_rewriting_harness_runs_and_chrf(llama):
    model, tok = llama
    src = ["the man reads a book", "a dog runs in the park", "the child plays music", "a cat sleeps on the bed"]
    tgt = ["a man reads the book", "the dog runs on the field", "a child plays a song", "the cat sleeps"]
    task = RewriteTask("toy", "KJV: {source}\nWEB: {target}", src[:3], tgt[:3], src[3:], tgt[3:])
    emb = _bow(src)
    res = evaluate_rewriting(model, tok, task, emb[:3], emb[3:], selector="knn", k=2, max_new_tokens=5)
    assert res.metric == "chrF" and 0.0 <= res.score <= 100.0 and len(res.predictions) == 1
    seq = evaluate_rewriting(model, tok, task, emb[:3], emb[3:], selector="sequential", k=2, max_new_tokens=3,
                             selector_params={"n_candidates": 2})
    assert len(seq.selections[0]) == 2
    assert chrf(["the same words"], ["the same words"]) == pytest.approx(100.0)
    assert chrf(["xyz"], ["the same words"]) < 10


# ----------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("name", ["SST2", "TREC", "SUBJ", "MR"])
def test_tasks_from_synthetic_senteval(synthetic_data, name):
    task = load_classification_task(name, synthetic_data)
    assert task.pool_texts and task.test_texts
    assert not set(task.pool_texts) & set(task.test_texts)
    assert set(np.unique(task.test_labels)) <= set(range(len(task.label_words)))
    assert len(task.label_words) == (6 if name == "TREC" else 2)
    small = task.limit(n_test=3, n_pool=5, seed=1)
    assert len(small.test_texts) == 3 and len(small.pool_texts) == 5
    assert small.pool_texts == task.limit(n_test=3, n_pool=5, seed=1).pool_texts


@needs_shared_data
def test_real_task_splits():
    sizes = {}
    for name in ("SST2", "TREC", "SUBJ", "MR"):
        task = load_classification_task(name)
        assert not set(task.pool_texts) & set(task.test_texts)
        sizes[name] = (len(task.pool_texts), len(task.test_texts))
    assert sizes["TREC"][1] == 500 and sizes["SST2"][1] == 1821
    assert sizes["SUBJ"][1] == 2000 and sizes["MR"][1] == round(0.2 * 10662)
