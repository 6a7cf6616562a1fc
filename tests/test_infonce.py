"""InfoNCE: hand-computed values, an independent formulation, and sentence-transformers' MNRL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from contrastkit.errors import ConfigError
from contrastkit.losses import LOSSES, infonce


def _grads(fn, *tensors):
    leaves = [t.clone().double().requires_grad_(True) for t in tensors]
    loss = fn(*leaves)
    loss.backward()
    return loss.detach(), [leaf.grad for leaf in leaves]


def test_hand_computed_two_by_two():
    # orthonormal anchors; positives equal anchors -> cos matrix is the identity
    a = torch.eye(2)
    loss = infonce(a, a.clone(), temperature=1.0)
    expected = -math.log(math.e / (math.e + 1))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_hand_computed_with_hard_negative_weight():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # anchor i's negative equals the other positive
    tau, alpha = 0.5, 2.0
    # row 0 logits: pos 1/tau, other pos 0, own neg 0 + log(alpha), other neg 1/tau
    row = np.array([1 / tau, 0.0, math.log(alpha), 1 / tau])
    expected = -(row[0] - np.log(np.exp(row).sum()))
    got = infonce(a, p, neg, temperature=tau, hard_negative_weight=alpha)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def _independent(a, p, negs, tau, alpha):
    """Per-anchor softmax written with explicit loops (no shared code with the implementation)."""
    n = a.shape[0]
    an = a / a.norm(dim=1, keepdim=True)
    cands = [p[j] / p[j].norm() for j in range(n)]
    owner = list(range(n))
    if negs is not None:
        for i in range(n):
            for k in range(negs.shape[1]):
                cands.append(negs[i, k] / negs[i, k].norm())
                owner.append(("neg", i))
    total = 0.0
    for i in range(n):
        logits = []
        for c, who in zip(cands, owner):
            z = (an[i] * c).sum() / tau
            if who == ("neg", i):
                z = z + math.log(alpha)
            logits.append(z)
        logits = torch.stack(logits)
        total = total - (logits[i] - torch.logsumexp(logits, 0))
    return total / n


@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_matches_independent_formulation(k, alpha):
    g = torch.Generator().manual_seed(k)
    a, p = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    negs = torch.randn(5, k, 8, generator=g) if k else None
    got = infonce(a.double(), p.double(), None if negs is None else negs.double(), temperature=0.07,
                  hard_negative_weight=alpha)
    ref = _independent(a.double(), p.double(), None if negs is None else negs.double(), 0.07, alpha)
    assert got.item() == pytest.approx(ref.item(), abs=1e-10)


@pytest.mark.parametrize("n_neg_cols", [0, 1, 2])
def test_equals_sentence_transformers_mnrl_loss_and_gradients(n_neg_cols):
    st_losses = pytest.importorskip("sentence_transformers.losses")
    tau = 0.05
    mnrl = st_losses.MultipleNegativesRankingLoss(model=None, scale=1 / tau)
    g = torch.Generator().manual_seed(7)
    cols = [torch.randn(6, 16, generator=g) for _ in range(2 + n_neg_cols)]
    labels = torch.arange(6)

    def ours(a, p, *negs):
        neg = torch.stack(negs, dim=1) if negs else None
        return infonce(a, p, neg, temperature=tau)

    def theirs(*embs):
        return mnrl.compute_loss_from_embeddings(list(embs), labels)

    loss_a, grads_a = _grads(ours, *cols)
    loss_b, grads_b = _grads(theirs, *cols)
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-6)
    for ga, gb in zip(grads_a, grads_b):
        assert torch.allclose(ga, gb, atol=1e-6), (ga - gb).abs().max()


def test_symmetric_averages_both_directions():
    g = torch.Generator().manual_seed(1)
    a, p = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    both = infonce(a, p, temperature=0.1, symmetric=True)
    expected = (infonce(a, p, temperature=0.1) + infonce(p, a, temperature=0.1)) / 2
    assert both.item() == pytest.approx(expected.item(), abs=1e-6)


def test_bad_arguments_are_rejected():
    a = torch.randn(3, 4)
    with pytest.raises(ConfigError, match="temperature"):
        infonce(a, a, temperature=0.0)
    with pytest.raises(ConfigError, match="hard_negative_weight"):
        infonce(a, a, torch.randn(3, 4), hard_negative_weight=0.0)
    with pytest.raises(ValueError, match="negatives"):
        infonce(a, a, torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        infonce(a, torch.randn(2, 4))


def test_tiny_temperature_stays_finite():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 8, generator=g)
    assert torch.isfinite(infonce(a, a + 0.01, temperature=1e-4))


def test_registry_lookup():
    assert LOSSES.get("infonce") is infonce
    with pytest.raises(ConfigError, match=r"known: .*infonce"):
        LOSSES.get("nope")
