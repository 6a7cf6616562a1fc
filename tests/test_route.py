"""contrastkit.route: semantic router scores and threshold on hand-computed cases, cost-aware choices under a
penalty and a budget, CSCR's bands/positives/loss and a separable routing problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.errors import ConfigError
from contrastkit.route import (
    ContrastiveCostRouter,
    KNNRouter,
    SemanticRouter,
    calibrate_threshold,
    choose_under_cost,
    cost_band_positives,
    cost_bands,
    cost_spectrum_infonce,
    logit_footprint,
    oracle_choice,
    perplexity_fingerprint,
    route_scores,
)


def unit(deg: float) -> list[float]:
    """A 2-d unit vector at ``deg`` degrees."""
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


def test_route_scores_centroid_and_knn():
    utt = [unit(0), unit(20), unit(90), unit(60)]
    routes = [0, 0, 1, 1]
    q = [unit(0)]
    c = math.cos
    # centroids: route 0 at 10 deg, route 1 at 75 deg
    np.testing.assert_allclose(route_scores(q, utt, routes, 2), [[c(math.radians(10)), c(math.radians(75))]])
    np.testing.assert_allclose(route_scores(q, utt, routes, 2, mode="knn", k=1), [[1.0, 0.5]], atol=1e-12)
    np.testing.assert_allclose(route_scores(q, utt, routes, 2, mode="knn", k=2),
                               [[(1 + c(math.radians(20))) / 2, 0.25]], atol=1e-12)
    with pytest.raises(ConfigError):
        route_scores(q, utt, routes, 2, mode="nope")


def test_calibrate_threshold_hand_case():
    # sorted by score: .5 (no route), .6 (no route), .7 bye ok, .9 bye ok, .95 greet ok
    # t=-inf: 3/5; t=.55: 4/5; t=.65: 5/5; t=.8: 4/5 (loses .7); t=.925: 3/5; t=inf: 2/5
    scores = [0.95, 0.9, 0.6, 0.7, 0.5]
    best = ["greet", "bye", "greet", "bye", "bye"]
    targets = ["greet", "bye", None, "bye", None]
    t, acc = calibrate_threshold(scores, best, targets)
    assert t == pytest.approx(0.65) and acc == 1.0
    # a wrong best route counts as an error whether routed or not (target is another route)
    t2, acc2 = calibrate_threshold([0.9, 0.8], ["a", "a"], ["a", "b"])
    assert acc2 == 0.5 and t2 == -np.inf  # ties: the lowest threshold
    assert calibrate_threshold([0.3], ["a"], [None]) == (np.inf, 1.0)


VECS = {"hello": unit(0), "hi there": unit(10), "goodbye": unit(90), "see you": unit(80),
        "hey": unit(5), "bye now": unit(85), "tax form": unit(45), "weather": unit(50), "hello friend": unit(20)}


class FakeEncoder:
    """Maps known texts to fixed vectors (has .encode like a contrastkit Encoder)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.array([VECS[t] for t in texts])


def test_semantic_router_threshold_and_none():
    router = SemanticRouter(FakeEncoder(), {"greet": ["hello", "hi there"], "bye": ["goodbye", "see you"]})
    assert router.route(["hey", "bye now", "tax form"]) == ["greet", "bye", "greet"]  # no threshold: always routes
    # centroids at 5 and 85 deg. held-out: hey (cos 0 -> 1.0), bye now (1.0), hello friend (cos 15 = .966),
    # tax form (cos 40 = .766, no route), weather (cos 35 = .819, no route).
    acc = router.calibrate(["hey", "bye now", "hello friend", "tax form", "weather"],
                           ["greet", "bye", "greet", None, None])
    assert acc == 1.0
    assert router.threshold == pytest.approx((math.cos(math.radians(35)) + math.cos(math.radians(15))) / 2)
    assert router.route(["hey", "tax form", "weather"]) == ["greet", None, None]
    knn = SemanticRouter(FakeEncoder().encode, {"greet": ["hello", "hi there"], "bye": ["goodbye"]}, mode="knn", k=1)
    np.testing.assert_allclose(knn.scores(["hey"]), [[math.cos(math.radians(5)), math.cos(math.radians(85))]])
    with pytest.raises(ConfigError):
        router.calibrate(["hey"], ["nope"])
    with pytest.raises(ConfigError):
        SemanticRouter(FakeEncoder(), {"empty": []})


def test_choose_under_cost_hand_case():
    q = np.array([[0.6, 0.8, 0.9]])
    c = np.array([1.0, 2.0, 4.0])
    assert choose_under_cost(q, c, lam=0.0).tolist() == [2]
    assert choose_under_cost(q, c, lam=0.1).tolist() == [1]  # .5, .6, .5
    assert choose_under_cost(q, c, lam=0.3).tolist() == [0]  # .3, .2, -.3
    assert choose_under_cost(q, c, budget=2.0).tolist() == [1]  # the best affordable
    assert choose_under_cost(q, c, budget=0.5).tolist() == [0]  # nothing fits: the cheapest
    assert choose_under_cost([[0.5, 0.5]], [2.0, 1.0]).tolist() == [1]  # tie: the cheaper


def test_knn_router_cost_budget_hand_case():
    # near 0 deg both models are right; near 90 deg only the large (expensive) one is.
    train = [unit(0), unit(5), unit(90), unit(85)]
    quality = [[1, 1], [1, 1], [0, 1], [0, 1]]
    cost = [1.0, 5.0]
    r = KNNRouter(train, quality, cost, k=2)
    qhat, chat = r.predict([unit(2), unit(88)])
    np.testing.assert_allclose(qhat, [[1, 1], [0, 1]])
    np.testing.assert_allclose(chat, [[1, 5], [1, 5]])
    assert r.route([unit(2), unit(88)]).tolist() == [0, 1]  # quality ties go to the cheaper model
    assert r.route([unit(88)], lam=0.3).tolist() == [0]  # 0 - .3 > 1 - 1.5
    assert r.route([unit(88)], lam=0.2).tolist() == [1]  # 0 - .2 < 1 - 1.0
    assert r.route([unit(88)], budget=2.0).tolist() == [0]  # the large model does not fit the budget
    # per-query costs: neighbours' mean
    r2 = KNNRouter(train, quality, [[1, 4], [1, 6], [1, 4], [1, 6]], k=2)
    np.testing.assert_allclose(r2.predict([unit(2)])[1], [[1, 5]])
    with pytest.raises(ConfigError):
        KNNRouter(train, quality[:3], cost)


def test_oracle_choice():
    q = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 0]])
    assert oracle_choice(q, np.array([1.0, 2.0, 3.0])).tolist() == [0, 1, 0]


def test_cost_bands_and_positives():
    bands = cost_bands([1.0, 2.0, 10.0, 11.0], 2)
    assert bands.tolist() == [0, 0, 1, 1]
    assert cost_bands([3.0, 1.0, 2.0], 3).tolist() == [2, 0, 1]
    assert cost_bands([5.0, 1.0], 1).tolist() == [0, 0]
    pos = cost_band_positives([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], bands)
    assert pos.tolist() == [[False, True, False, False], [False, False, True, True], [False] * 4,
                            [True, True, False, False]]


def test_cost_spectrum_infonce_equals_formula():
    torch.manual_seed(0)
    q, e = torch.randn(3, 4), torch.randn(5, 4)
    pos = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)
    s = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(e, dim=-1).T / 0.5
    want = torch.stack([-(torch.log(s[0].exp()[[0, 2]].sum() / s[0].exp().sum())),
                        -(torch.log(s[2].exp()[4] / s[2].exp().sum()))]).mean()
    assert float(cost_spectrum_infonce(q, e, pos, temperature=0.5)) == pytest.approx(float(want), rel=1e-5)
    assert float(cost_spectrum_infonce(q, e, torch.zeros(3, 5, dtype=torch.bool))) == 0.0


def test_fingerprints():
    fp = logit_footprint([np.log([[0.2, 0.8], [0.5, 0.5]]), np.log([[1.0, 1.0, 2.0]])])
    np.testing.assert_allclose(fp, [0.2, 0.8, 0.5, 0.5, 0.25, 0.25, 0.5])
    pf = perplexity_fingerprint([1.0, 2.0, 3.0])
    assert pf.mean() == pytest.approx(0.0) and pf.std() == pytest.approx(1.0)


def test_cscr_learns_the_cheapest_accurate_expert():
    rng = np.random.default_rng(0)
    dim = 8
    centre_a, centre_b = np.eye(dim)[0], np.eye(dim)[1]

    def cluster(c: np.ndarray, n: int) -> np.ndarray:
        return c + 0.1 * rng.normal(size=(n, dim))

    x = np.vstack([cluster(centre_a, 40), cluster(centre_b, 40)])
    # 3 candidates, costs 1, 2, 8: on A every candidate is right, on B only the most expensive one
    quality = np.vstack([np.ones((40, 3)), np.tile([0, 0, 1], (40, 1))])
    costs = np.array([1.0, 2.0, 8.0])
    descriptors = rng.normal(size=(3, 6))
    router = ContrastiveCostRouter(dim, 6, dim=16, hidden=32)
    rep = router.fit(x, quality, costs, descriptors, n_bands=3, epochs=60, lr=5e-3, seed=0)
    assert rep.skipped_queries == 0 and rep.steps > 0
    test = np.vstack([cluster(centre_a, 10), cluster(centre_b, 10)])
    assert router.route(test).tolist() == [0] * 10 + [2] * 10
    capped = router.route(test, budget=3.0).tolist()  # the expensive one never fits
    assert capped[:10] == [0] * 10 and set(capped[10:]) <= {0, 1}
    assert (router.route(test, lam=10.0) == 0).all()  # a huge cost penalty: always the cheapest
    # the same training reproduces the same routes (seeded)
    again = ContrastiveCostRouter(dim, 6, dim=16, hidden=32)
    again.fit(x, quality, costs, descriptors, n_bands=3, epochs=60, lr=5e-3, seed=0)
    np.testing.assert_allclose(again.embed_queries(test), router.embed_queries(test), atol=1e-6)
    with pytest.raises(ConfigError):
        ContrastiveCostRouter(dim, 6).route(test)
