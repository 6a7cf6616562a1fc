"""The loss catalog: hand-computed cases, independent numpy formulations, degenerate inputs.

The numpy references below are written from the papers' formulas with explicit loops; they share
no code with ``contrastkit.losses`` (only the documented column layout of candidates: positives
first, then anchor i's k hard negatives at columns N + i*k + j).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.errors import ConfigError
from contrastkit.losses import (
    LOSSES,
    adaptive_temperature,
    align_uniform,
    alignment,
    angle,
    bidirectional_margin,
    cosent,
    dclr,
    debiased,
    energy_hinge,
    hard_negative_weighting,
    infonce,
    listwise_distill,
    mse_distill,
    non_contrastive,
    soft_infonce,
    triplet,
    uniformity,
)

# ----------------------------------------------------------------------------- numpy references


def _n(x):
    return x.detach().double().numpy()


def np_cos(u, v):
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    return 0.0 if nu == 0 or nv == 0 else float(u @ v / (nu * nv))


def np_candidates(p, negs):
    cands = [p[j] for j in range(p.shape[0])]
    if negs is not None:
        for i in range(negs.shape[0]):
            for j in range(negs.shape[1]):
                cands.append(negs[i, j])
    return cands


def np_lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def np_infonce(a, p, negs, tau):
    cands = np_candidates(p, negs)
    total = 0.0
    for i in range(a.shape[0]):
        logits = [np_cos(a[i], c) / tau for c in cands]
        total += np_lse(logits) - logits[i]
    return total / a.shape[0]


def np_debiased(a, p, negs, tau, tau_plus, beta=0.0, report=None):
    """Chuang et al. eq. (N*g) and Robinson et al.'s importance-weighted mean; report clamp hits."""
    cands = np_candidates(p, negs)
    total = 0.0
    for i in range(a.shape[0]):
        pos = math.exp(np_cos(a[i], p[i]) / tau)
        sims = [np_cos(a[i], c) for j, c in enumerate(cands) if j != i]
        big_n = len(sims)
        e = [math.exp(s / tau) for s in sims]
        w = [math.exp(beta * s / tau) for s in sims]
        mean_q = sum(wi * ei for wi, ei in zip(w, e)) / sum(w)
        est = (big_n * mean_q - tau_plus * big_n * pos) / (1 - tau_plus)
        floor = big_n * math.exp(-1 / tau)
        if report is not None:
            report.append(est < floor)
        ng = max(est, floor)
        total += -math.log(pos / (pos + ng))
    return total / a.shape[0]


def np_angle_sim(u, v):
    """AnglE reference: normalised complex quotient (z_u / z_v) * |z_v| / |z_u|, |sum(re) + sum(im)|."""
    h = len(u) // 2
    a, b, c, d = u[:h], u[h:], v[:h], v[h:]
    z = np.sum(c**2 + d**2)
    re = (a * c + b * d) / z
    im = (b * c - a * d) / z
    dz, dw = math.sqrt(np.sum(a**2 + b**2)), math.sqrt(np.sum(c**2 + d**2))
    re, im = re / (dz / dw), im / (dz / dw)
    return abs(re.sum() + im.sum())


def np_rank(sims, scores, lam):
    terms = [0.0]
    for i in range(len(sims)):
        for j in range(len(sims)):
            if scores[i] > scores[j]:
                terms.append(lam * (sims[j] - sims[i]))
    return np_lse(terms)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- registry


def test_registry_names():
    expected = {"infonce", "debiased", "hard_negative_weighting", "dclr", "energy_hinge", "align_uniform",
                "cosent", "angle", "soft_infonce", "graded", "triplet", "listwise_distill", "mse_distill",
                "bidirectional_margin", "non_contrastive", "adaptive_temperature"}
    assert set(LOSSES) == expected
    assert LOSSES.get("graded") is soft_infonce is LOSSES.get("soft_infonce")
    assert LOSSES.get("debiased") is debiased and LOSSES.get("infonce") is infonce
    for name in expected:
        fn = LOSSES.get(name)
        assert callable(fn) and fn.__doc__ and "Inputs" in fn.__doc__


# ----------------------------------------------------------------------------- debiased / HCL


def test_debiased_hand_computed():
    a = torch.eye(2, dtype=torch.float64)
    # anchor 0: pos = e^1, one negative e^0 = 1, N = 1; Ng = max((1 - 0.1 e)/0.9, e^-1)
    ng = max((1 - 0.1 * math.e) / 0.9, math.exp(-1))
    expected = -math.log(math.e / (math.e + ng))
    assert debiased(a, a.clone(), temperature=1.0, tau_plus=0.1).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k,tau_plus", [(0, 0.1), (2, 0.1), (1, 0.3)])
def test_debiased_matches_paper_formula(k, tau_plus):
    a, p = _rand(5, 6, seed=k), _rand(5, 6, seed=10 + k)
    negs = _rand(5, k, 6, seed=20 + k) if k else None
    got = debiased(a, p, negs, temperature=0.5, tau_plus=tau_plus).item()
    ref = np_debiased(_n(a), _n(p), None if negs is None else _n(negs), 0.5, tau_plus)
    assert got == pytest.approx(ref, abs=1e-10)


def test_debiased_clamp_branch():
    a = _rand(4, 6, seed=1)
    p = a + 0.01 * _rand(4, 6, seed=2)  # positives almost equal -> estimator goes below the floor
    hits: list[bool] = []
    ref = np_debiased(_n(a), _n(p), None, 0.5, 0.9, report=hits)
    assert any(hits)
    assert debiased(a, p, temperature=0.5, tau_plus=0.9).item() == pytest.approx(ref, abs=1e-10)


def test_debiased_tau_plus_zero_is_infonce():
    a, p, n = _rand(4, 5, seed=3), _rand(4, 5, seed=4), _rand(4, 2, 5, seed=5)
    assert debiased(a, p, n, temperature=0.1, tau_plus=0.0).item() == pytest.approx(
        infonce(a, p, n, temperature=0.1).item(), abs=1e-10)


@pytest.mark.parametrize("beta,tau_plus", [(0.5, 0.0), (1.0, 0.1), (3.0, 0.2)])
def test_hard_negative_weighting_matches_paper_formula(beta, tau_plus):
    a, p, n = _rand(5, 6, seed=6), _rand(5, 6, seed=7), _rand(5, 2, 6, seed=8)
    got = hard_negative_weighting(a, p, n, temperature=0.5, beta=beta, tau_plus=tau_plus).item()
    assert got == pytest.approx(np_debiased(_n(a), _n(p), _n(n), 0.5, tau_plus, beta=beta), abs=1e-10)


def test_hard_negative_weighting_beta_zero_is_debiased():
    a, p = _rand(4, 5, seed=9), _rand(4, 5, seed=10)
    assert hard_negative_weighting(a, p, temperature=0.2, beta=0.0, tau_plus=0.1).item() == pytest.approx(
        debiased(a, p, temperature=0.2, tau_plus=0.1).item(), abs=1e-12)


def test_debiased_bad_parameters():
    a = _rand(3, 4)
    with pytest.raises(ConfigError, match="tau_plus"):
        debiased(a, a, tau_plus=1.0)
    with pytest.raises(ConfigError, match="beta"):
        hard_negative_weighting(a, a, beta=-1.0)


# ----------------------------------------------------------------------------- DCLR


def np_dclr(a, p, negs, tau, ref, phi, noise):
    cands = np_candidates(p, negs)
    total = 0.0
    for i in range(a.shape[0]):
        logits = [np_cos(a[i], c) / tau for j, c in enumerate(cands) if j == i or ref is None or ref[i, j] <= phi]
        logits += [np_cos(a[i], z) / tau for z in (noise if noise is not None else [])]
        pos = np_cos(a[i], p[i]) / tau
        total += np_lse(logits) - pos
    return total / a.shape[0]


def test_dclr_matches_paper_formula():
    a, p, n = _rand(4, 6, seed=11), _rand(4, 6, seed=12), _rand(4, 1, 6, seed=13)
    ref = torch.rand(4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noise = _rand(3, 6, seed=14)
    got = dclr(a, p, n, temperature=0.3, reference_sim=ref, phi=0.5, noise=noise).item()
    assert got == pytest.approx(np_dclr(_n(a), _n(p), _n(n), 0.3, _n(ref), 0.5, _n(noise)), abs=1e-10)


def test_dclr_without_filter_or_noise_is_infonce():
    a, p = _rand(4, 6, seed=15), _rand(4, 6, seed=16)
    assert dclr(a, p, temperature=0.1).item() == pytest.approx(infonce(a, p, temperature=0.1).item(), abs=1e-10)


def test_dclr_all_negatives_masked_gives_zero():
    a, p = _rand(3, 4, seed=17), _rand(3, 4, seed=18)
    loss = dclr(a, p, temperature=0.05, reference_sim=torch.ones(3, 3), phi=0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_dclr_generator_noise_is_deterministic():
    a, p = _rand(3, 4, seed=19), _rand(3, 4, seed=20)
    one = dclr(a, p, num_noise=5, generator=torch.Generator().manual_seed(42))
    two = dclr(a, p, num_noise=5, generator=torch.Generator().manual_seed(42))
    noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    assert one.item() == two.item() == pytest.approx(dclr(a, p, noise=noise).item(), abs=1e-12)
    with pytest.raises(ConfigError, match="generator"):
        dclr(a, p, num_noise=2)
    with pytest.raises(ValueError, match="reference_sim"):
        dclr(a, p, reference_sim=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="noise"):
        dclr(a, p, noise=torch.zeros(2, 5))


# ----------------------------------------------------------------------------- energy hinge (PromCSE)


def np_energy_hinge(a, p, negs, tau, m, lam):
    cands = np_candidates(p, negs)
    hinge = 0.0
    for i in range(a.shape[0]):
        pos = np_cos(a[i], p[i])
        hardest = max(np_cos(a[i], c) for j, c in enumerate(cands) if j != i)
        hinge += max(0.0, m - (pos - hardest))
    return np_infonce(a, p, negs, tau) + lam * hinge / a.shape[0] / tau


@pytest.mark.parametrize("margin", [0.2, 2.5])
def test_energy_hinge_matches_formula(margin):
    a, p, n = _rand(4, 6, seed=21), _rand(4, 6, seed=22), _rand(4, 1, 6, seed=23)
    got = energy_hinge(a, p, n, temperature=0.1, margin=margin, weight=0.5).item()
    assert got == pytest.approx(np_energy_hinge(_n(a), _n(p), _n(n), 0.1, margin, 0.5), abs=1e-10)


def test_energy_hinge_hand_computed():
    e = torch.eye(2, dtype=torch.float64)
    # pos cosine 1, hardest negative 0: hinge = max(0, 1.5 - 1) = 0.5, / tau = 0.5
    expected = -math.log(math.e / (math.e + 1)) + 1.0 * 0.5 / 1.0
    assert energy_hinge(e, e.clone(), temperature=1.0, margin=1.5, weight=1.0).item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- alignment / uniformity


def test_align_uniform_hand_computed():
    e = torch.eye(3, dtype=torch.float64)
    assert alignment(e, e.clone()).item() == pytest.approx(0.0)
    # orthonormal rows: every squared distance is 2 -> log mean exp(-2t) = -2t
    assert uniformity(e, t=2.0).item() == pytest.approx(-4.0)
    rot = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    # squared distances 2, 2, 0 -> alpha = 1: mean(sqrt 2, sqrt 2, 0)
    assert alignment(e, rot, alpha=1.0).item() == pytest.approx(2 * math.sqrt(2) / 3)


def np_align_uniform(a, p, alpha, t, wa, wu):
    def unit(x):
        return [r / np.linalg.norm(r) for r in x]

    ua, up = unit(a), unit(p)
    align = sum(np.linalg.norm(x - y) ** alpha for x, y in zip(ua, up)) / len(ua)

    def unif(xs):
        vals = [math.exp(-t * np.sum((xs[i] - xs[j]) ** 2)) for i in range(len(xs)) for j in range(i + 1, len(xs))]
        return math.log(sum(vals) / len(vals))

    return wa * align + wu * (unif(ua) + unif(up)) / 2


@pytest.mark.parametrize("alpha,t", [(2.0, 2.0), (1.0, 0.5)])
def test_align_uniform_matches_formula(alpha, t):
    a, p = _rand(5, 4, seed=24), _rand(5, 4, seed=25)
    got = align_uniform(a, p, alpha=alpha, t=t, align_weight=0.7, uniform_weight=1.3).item()
    assert got == pytest.approx(np_align_uniform(_n(a), _n(p), alpha, t, 0.7, 1.3), abs=1e-10)


def test_align_uniform_degenerate():
    one = _rand(1, 4)
    with pytest.raises(ValueError, match="N >= 2"):
        align_uniform(one, one)
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(one)
    assert align_uniform(one, one, uniform_weight=0.0).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="negatives"):
        align_uniform(_rand(2, 4), _rand(2, 4), _rand(2, 4))
    # identical points: zero distances with alpha < 2 keep a finite gradient
    x = _rand(3, 4).requires_grad_(True)
    align_uniform(x, x.detach().clone(), alpha=1.0).backward()
    assert torch.isfinite(x.grad).all()
    y = torch.ones(3, 4, dtype=torch.float64, requires_grad=True)
    uniformity(y, t=1e3).backward()
    assert torch.isfinite(y.grad).all()


# ----------------------------------------------------------------------------- CoSENT / AnglE


def test_cosent_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # cosines 1 and 0
    # pair 1 scored higher than pair 0 although its cosine is lower: log(1 + e^{20 (1 - 0)})
    got = cosent(a, p, scores=torch.tensor([0.0, 1.0]), temperature=0.05).item()
    assert got == pytest.approx(math.log1p(math.exp(20.0)))
    assert cosent(a, p, scores=torch.tensor([1.0, 1.0])).item() == 0.0  # no ordered pair


def test_cosent_matches_formula():
    a, p = _rand(6, 5, seed=26), _rand(6, 5, seed=27)
    scores = torch.tensor([0.0, 2.0, 1.0, 2.0, 5.0, 3.5])
    sims = [np_cos(x, y) for x, y in zip(_n(a), _n(p))]
    got = cosent(a, p, scores=scores, temperature=0.1).item()
    assert got == pytest.approx(np_rank(sims, scores.tolist(), 10.0), abs=1e-10)


def test_angle_term_matches_reference_complex_quotient():
    a, p = _rand(6, 8, seed=28), _rand(6, 8, seed=29)
    scores = torch.tensor([1.0, 0.0, 3.0, 2.0, 2.0, 4.0])
    ys = [np_angle_sim(x, y) for x, y in zip(_n(a), _n(p))]
    got = angle(a, p, scores=scores, ibn_weight=0.0, angle_weight=1.0, angle_temperature=0.05).item()
    assert got == pytest.approx(np_rank(ys, scores.tolist(), 20.0), abs=1e-9)


def test_angle_combines_weighted_terms():
    a, p, n = _rand(5, 6, seed=30), _rand(5, 6, seed=31), _rand(5, 6, seed=32)
    scores = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    sims = [np_cos(x, y) for x, y in zip(_n(a), _n(p))]
    ys = [np_angle_sim(x, y) for x, y in zip(_n(a), _n(p))]
    expected = (0.5 * np_rank(sims, scores.tolist(), 20.0) + 2.0 * np_infonce(_n(a), _n(p), _n(n)[:, None], 0.05)
                + 0.02 * np_rank(ys, scores.tolist(), 20.0))
    got = angle(a, p, n, scores=scores, cosine_weight=0.5, ibn_weight=2.0, angle_weight=0.02).item()
    assert got == pytest.approx(expected, abs=1e-9)


def test_angle_positive_mask_restricts_infonce_rows():
    a, p = _rand(4, 6, seed=33), _rand(4, 6, seed=34)
    mask = torch.tensor([True, False, True, False])
    cands = np_candidates(_n(p), None)
    rows = []
    for i in (0, 2):
        logits = [np_cos(_n(a)[i], c) / 0.05 for c in cands]
        rows.append(np_lse(logits) - logits[i])
    got = angle(a, p, angle_weight=0.0, positive_mask=mask).item()
    assert got == pytest.approx(sum(rows) / 2, abs=1e-9)
    assert angle(a, p, angle_weight=0.0, positive_mask=torch.zeros(4, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ValueError, match="scores"):
        angle(a, p)  # angle_weight > 0 needs scores


# ----------------------------------------------------------------------------- soft targets


def np_soft(a, p, negs, targets, tau, tau_t):
    cands = np_candidates(p, negs)
    total = 0.0
    for i in range(a.shape[0]):
        logits = [np_cos(a[i], c) / tau for c in cands]
        lz = np_lse(logits)
        tz = np_lse([t / tau_t for t in targets[i]])
        total -= sum(math.exp(t / tau_t - tz) * (lg - lz) for t, lg in zip(targets[i], logits))
    return total / a.shape[0]


def test_soft_infonce_matches_formula():
    a, p, n = _rand(4, 5, seed=35), _rand(4, 5, seed=36), _rand(4, 1, 5, seed=37)
    targets = _rand(4, 8, seed=38)
    got = soft_infonce(a, p, n, target_scores=targets, temperature=0.2, target_temperature=0.5).item()
    assert got == pytest.approx(np_soft(_n(a), _n(p), _n(n), _n(targets), 0.2, 0.5), abs=1e-10)


def test_soft_infonce_one_hot_targets_give_infonce():
    a, p = _rand(4, 5, seed=39), _rand(4, 5, seed=40)
    targets = torch.eye(4, dtype=torch.float64)
    got = soft_infonce(a, p, target_scores=targets, temperature=0.1, target_temperature=1e-4)
    assert got.item() == pytest.approx(infonce(a, p, temperature=0.1).item(), abs=1e-9)
    masked = torch.full((4, 4), float("-inf"), dtype=torch.float64)
    masked.fill_diagonal_(0.0)  # every negative removed from the target
    assert soft_infonce(a, p, target_scores=masked, temperature=0.1).item() == pytest.approx(got.item(), abs=1e-9)
    with pytest.raises(ValueError, match="finite"):
        soft_infonce(a, p, target_scores=torch.full((4, 4), float("-inf")))
    with pytest.raises(ValueError, match="target_scores"):
        soft_infonce(a, p, target_scores=torch.zeros(4, 5))


# ----------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_triplet_matches_formula(distance):
    a, p, n = _rand(4, 5, seed=41), _rand(4, 5, seed=42), _rand(4, 2, 5, seed=43)
    na, np_, nn = _n(a), _n(p), _n(n)

    def dist(u, v):
        return 1 - np_cos(u, v) if distance == "cosine" else float(np.linalg.norm(u - v))

    vals = [max(0.0, 0.8 + dist(na[i], np_[i]) - dist(na[i], nn[i, j])) for i in range(4) for j in range(2)]
    got = triplet(a, p, n, margin=0.8, distance=distance).item()
    assert got == pytest.approx(sum(vals) / len(vals), abs=1e-10)


def test_triplet_hand_computed_and_errors():
    a = torch.tensor([[1.0, 0.0]])
    # cosine distance: d(a,p) = 0, d(a,n) = 1 -> max(0, 0.5 + 0 - 1) = 0; margin 1.5 -> 0.5
    assert triplet(a, a.clone(), torch.tensor([[0.0, 1.0]]), margin=1.5).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="negatives"):
        triplet(a, a)
    with pytest.raises(ConfigError, match="distance"):
        triplet(a, a, a, distance="manhattan")
    x = _rand(2, 3).requires_grad_(True)  # euclidean distance 0 between anchor and positive
    triplet(x, x, _rand(2, 3, seed=1), distance="euclidean").backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- distillation


def test_listwise_distill_matches_formula():
    a, p, n = _rand(3, 5, seed=44), _rand(3, 5, seed=45), _rand(3, 2, 5, seed=46)
    teacher = _rand(3, 3, seed=47)
    na, np_, nn, nt = _n(a), _n(p), _n(n), _n(teacher)
    total = 0.0
    for i in range(3):
        cands = [np_[i], nn[i, 0], nn[i, 1]]
        s = [np_cos(na[i], c) / 0.1 for c in cands]
        t = [x / 2.0 for x in nt[i]]
        ls, lt = np_lse(s), np_lse(t)
        total += sum(math.exp(tj - lt) * ((tj - lt) - (sj - ls)) for tj, sj in zip(t, s))
    got = listwise_distill(a, p, n, teacher_scores=teacher, temperature=0.1, teacher_temperature=2.0).item()
    assert got == pytest.approx(total / 3, abs=1e-10)


def test_listwise_distill_degenerate():
    a, p = _rand(2, 4), _rand(2, 4, seed=1)
    assert listwise_distill(a, p, teacher_scores=torch.zeros(2, 1)).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="teacher_scores"):
        listwise_distill(a, p, teacher_scores=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        listwise_distill(a, p, _rand(2, 4, seed=2), teacher_scores=torch.tensor([[0.0, float("inf")]] * 2))


def test_mse_distill_matches_formula():
    s, s2 = _rand(3, 4, seed=48).requires_grad_(True), _rand(3, 4, seed=49)
    t = _rand(3, 4, seed=50).requires_grad_(True)
    expected = (np.sum((_n(s) - _n(t)) ** 2) + np.sum((_n(s2) - _n(t)) ** 2)) / 24
    loss = mse_distill(s, s2, teacher=t)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    assert t.grad is None and torch.isfinite(s.grad).all()  # no gradient into the teacher
    assert mse_distill(s, teacher=s.clone() * 3, normalize=True).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same"):
        mse_distill(s, teacher=_rand(3, 5))
    with pytest.raises(ValueError, match="negatives"):
        mse_distill(s, s2, s, teacher=t)


# ----------------------------------------------------------------------------- ClusterNS BML


def test_bidirectional_margin_matches_formula():
    a, p, n = _rand(4, 5, seed=51), _rand(4, 5, seed=52), _rand(4, 1, 5, seed=53)
    mask = torch.rand(4, 8, generator=torch.Generator().manual_seed(1)) > 0.5
    na, np_, nn = _n(a), _n(p), _n(n)
    cands = np_candidates(np_, nn)
    vals = []
    for i in range(4):
        for j in range(8):
            if j != i and bool(mask[i, j]):
                delta = np_cos(na[i], cands[j]) - np_cos(na[i], np_[i])
                vals.append(max(0.0, delta + 0.1) + max(0.0, -delta - 0.3))
    expected = np_infonce(na, np_, nn, 0.1) + 2.0 * sum(vals) / len(vals)
    got = bidirectional_margin(a, p, n, false_negative_mask=mask, temperature=0.1, weight=2.0).item()
    assert got == pytest.approx(expected, abs=1e-10)


def test_bidirectional_margin_hand_and_degenerate():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    flags = torch.tensor([[False, True], [False, False]])
    # anchor 0: positive cos 1, flagged candidate cos 0 -> delta = -1: relu(-0.9) + relu(1 - 0.3) = 0.7
    base = infonce(a, p, temperature=1.0).item()
    got = bidirectional_margin(a, p, false_negative_mask=flags, temperature=1.0, weight=1.0).item()
    assert got == pytest.approx(base + 0.7)
    none = torch.zeros(2, 2, dtype=torch.bool)
    assert bidirectional_margin(a, p, false_negative_mask=none, temperature=1.0).item() == pytest.approx(base)
    with pytest.raises(ConfigError, match="alpha"):
        bidirectional_margin(a, p, false_negative_mask=none, alpha=0.5, beta=0.1)
    with pytest.raises(ValueError, match="false_negative_mask"):
        bidirectional_margin(a, p, false_negative_mask=torch.zeros(2, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------- non-contrastive


def test_non_contrastive_matches_formula_and_stops_target_gradient():
    q, z = _rand(3, 4, seed=54), _rand(3, 4, seed=55).requires_grad_(True)
    expected = sum(2 - 2 * np_cos(x, y) for x, y in zip(_n(q), _n(z))) / 3
    loss = non_contrastive(q.requires_grad_(True), z)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    assert z.grad is None and torch.isfinite(q.grad).all()
    assert non_contrastive(torch.zeros(1, 4), torch.ones(1, 4)).item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------- MACL


def _macl_reference(a, p, negs, t0, alpha, a0):
    """The authors'/lightly's formulation: P on column 0, loss = -sg(1/(1-P)) * log P (autograd)."""
    an = a / a.norm(dim=1, keepdim=True)
    cands = [p[j] / p[j].norm() for j in range(p.shape[0])]
    if negs is not None:
        cands += [negs[i, j] / negs[i, j].norm() for i in range(negs.shape[0]) for j in range(negs.shape[1])]
    rows = []
    for i in range(a.shape[0]):
        pos = (an[i] * cands[i]).sum()
        others = [(an[i] * c).sum() for j, c in enumerate(cands) if j != i]
        rows.append(torch.stack([pos, *others]))
    cos = torch.stack(rows)
    big_a = cos[:, 0].detach().mean()
    t = t0 * (1 + alpha * (big_a - a0))
    prob = torch.softmax(cos / t, dim=1)[:, 0]
    v = 1 / (1 - prob)
    return (-v.detach() * torch.log(prob)).mean(), float(t)


@pytest.mark.parametrize("k", [0, 1])
def test_adaptive_temperature_matches_reference_value_and_gradients(k):
    a0, p0 = _rand(4, 5, seed=56), _rand(4, 5, seed=57)
    n0 = _rand(4, k, 5, seed=58) if k else None
    leaves = [t.clone().requires_grad_(True) for t in (a0, p0)]
    ours = adaptive_temperature(leaves[0], leaves[1], n0, temperature=0.5, alpha=0.5, a0=0.1)
    ours.backward()
    ref_leaves = [t.clone().requires_grad_(True) for t in (a0, p0)]
    ref, _ = _macl_reference(ref_leaves[0], ref_leaves[1], n0, 0.5, 0.5, 0.1)
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), abs=1e-10)
    for x, y in zip(leaves, ref_leaves):
        assert torch.allclose(x.grad, y.grad, atol=1e-10)


def test_adaptive_temperature_formula_without_reweighting():
    a, p = _rand(4, 5, seed=59), _rand(4, 5, seed=60)
    big_a = sum(np_cos(x, y) for x, y in zip(_n(a), _n(p))) / 4
    tau_eff = 0.1 * (1 + 0.8 * (big_a - 0.2))
    got = adaptive_temperature(a, p, temperature=0.1, alpha=0.8, a0=0.2, reweight=False).item()
    assert got == pytest.approx(np_infonce(_n(a), _n(p), None, tau_eff), abs=1e-10)
    assert adaptive_temperature(a, p, alpha=0.0, reweight=False).item() == pytest.approx(
        infonce(a, p).item(), abs=1e-10)


def test_adaptive_temperature_degenerate():
    a = _rand(3, 4)
    with pytest.raises(ValueError, match="tau_eff"):
        adaptive_temperature(a, -a, alpha=1.0, a0=0.5)  # A = -1: factor 1 - 1.5 < 0
    one = _rand(1, 4)
    assert adaptive_temperature(one, one).item() == pytest.approx(1.0)  # limit P -> 1
    assert adaptive_temperature(one, one, reweight=False).item() == pytest.approx(0.0)
    # P == 1 in floating point (reference: inf * 0): still finite here
    x = _rand(4, 6).requires_grad_(True)
    loss = adaptive_temperature(x, x.detach().clone(), temperature=1e-4)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- every loss, degenerate inputs

NO_NEGATIVES = {"align_uniform", "cosent", "non_contrastive", "mse_distill"}
NO_TEMPERATURE = {"align_uniform", "triplet", "mse_distill", "non_contrastive"}
ALL = sorted(set(LOSSES) - {"graded"})


def _call(name, a, p, negs, **over):
    """Call a registered loss with whatever extra inputs it needs, sized for (a, p, negs)."""
    n, d = a.shape
    k = 0 if negs is None else negs.shape[1]
    c = n + n * k
    g = torch.Generator().manual_seed(123)
    extra: dict = {}
    if name in ("cosent", "angle"):
        extra["scores"] = torch.arange(n, dtype=a.dtype) % 3
    elif name == "soft_infonce":
        extra["target_scores"] = torch.randn(c, generator=g).repeat(n, 1).to(a.dtype)
    elif name == "dclr":
        extra.update(reference_sim=torch.rand(n, c, generator=g).to(a.dtype), phi=0.5,
                     noise=torch.randn(2, d, generator=g).to(a.dtype))
    elif name == "listwise_distill":
        extra["teacher_scores"] = torch.randn(n, 1 + k, generator=g).to(a.dtype)
    elif name == "mse_distill":
        extra["teacher"] = torch.randn(n, d, generator=g).to(a.dtype)
    elif name == "bidirectional_margin":
        extra["false_negative_mask"] = torch.rand(n, c, generator=g) > 0.3
    extra.update(over)
    return LOSSES.get(name)(a, p, None if name in NO_NEGATIVES else negs, **extra)


def _value_and_grads(name, a, p, negs, **over):
    leaves = [t.clone().requires_grad_(True) for t in (a, p)]
    n_leaf = None if negs is None else negs.clone().requires_grad_(True)
    loss = _call(name, leaves[0], leaves[1], n_leaf, **over)
    loss.backward()
    grads = [t.grad for t in (*leaves, n_leaf) if t is not None and t.grad is not None]
    return loss, grads


def _inputs(n=4, k=1, d=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype),
            torch.randn(n, k, d, generator=g, dtype=dtype))


@pytest.mark.parametrize("name", ALL)
def test_finite_value_and_gradients(name):
    loss, grads = _value_and_grads(name, *_inputs())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("tau", [1e-4, 1e3])
@pytest.mark.parametrize("name", sorted(set(ALL) - NO_TEMPERATURE))
def test_temperature_extremes(name, tau):
    a, p, n = _inputs(seed=1)
    loss, grads = _value_and_grads(name, a, p, n, temperature=tau)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("t", [1e-4, 1e3])
def test_uniformity_scale_extremes(t):
    loss, grads = _value_and_grads("align_uniform", *_inputs(seed=2), t=t)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_zero_vectors(name):
    a, p, n = _inputs(seed=3)
    a[0] = 0.0
    p[1] = 0.0
    n[2, 0] = 0.0
    loss, grads = _value_and_grads(name, a, p, n)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one(name):
    a, p, n = _inputs(n=1, seed=4)
    negs = n if name == "triplet" else None
    if name == "align_uniform":
        with pytest.raises(ValueError, match="N >= 2"):
            _call(name, a, p, negs)
        return
    loss, grads = _value_and_grads(name, a, p, negs)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(set(ALL) - NO_TEMPERATURE - {"infonce"}))  # infonce: own tests
def test_bad_temperature_is_a_config_error(name):
    a, p, n = _inputs()
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="temperature"):
            _call(name, a, p, n, temperature=bad)


@pytest.mark.parametrize("name", ALL)
def test_shape_mismatch_is_a_value_error(name):
    a, p, n = _inputs()
    with pytest.raises(ValueError):
        _call(name, a, p[:, :5], n)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_against_finite_differences(name):
    a, p, n = _inputs(n=3, k=1, d=4, seed=5, dtype=torch.float64)
    # MACL: the reweighting rescales the gradient and A is stop-gradient (both by design, compared
    # with the reference above); finite differences can only check the plain form at a fixed tau
    over = {"reweight": False, "alpha": 0.0} if name == "adaptive_temperature" else {}
    if name not in NO_TEMPERATURE:
        over["temperature"] = 0.5
    a.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: _call(name, x, p, n, **over), (a,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("tau", [1e-4, 1e3])
@pytest.mark.parametrize("name,param", [("soft_infonce", "target_temperature"),
                                        ("listwise_distill", "teacher_temperature"),
                                        ("angle", "cosine_temperature"), ("angle", "angle_temperature")])
def test_secondary_temperature_extremes(name, param, tau):
    over = {param: tau, "cosine_weight": 1.0} if name == "angle" else {param: tau}
    loss, grads = _value_and_grads(name, *_inputs(seed=6), **over)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


def test_angle_odd_dimension_is_zero_padded():
    a, p = _rand(4, 5, seed=61), _rand(4, 5, seed=62)
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0])
    pad = [np.concatenate([x, [0.0]]) for x in _n(a)], [np.concatenate([y, [0.0]]) for y in _n(p)]
    ys = [np_angle_sim(x, y) for x, y in zip(*pad)]
    got = angle(a, p, scores=scores, ibn_weight=0.0, angle_weight=1.0).item()
    assert got == pytest.approx(np_rank(ys, scores.tolist(), 20.0), abs=1e-9)


def test_bidirectional_margin_every_candidate_flagged():
    a, p, n = _inputs(seed=7)
    loss, grads = _value_and_grads("bidirectional_margin", a, p, n,
                                   false_negative_mask=torch.ones(4, 8, dtype=torch.bool))
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
