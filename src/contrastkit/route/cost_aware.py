"""Cost-aware routing between LLMs from their measured per-query quality and cost.

* :class:`KNNRouter`: a query's ``k`` nearest training queries (cosine, in any embedding space) give each
  candidate's expected quality and cost; pick ``argmax quality - lam * cost`` among candidates whose expected
  cost fits ``budget`` (the kNN router that routing benchmarks use as their strong baseline, e.g. Hu et al.,
  2024, "RouterBench").
* :class:`ContrastiveCostRouter`: Cost-Spectrum Contrastive Routing (CSCR; Shirkavand, Gao, Yu & Huang, 2025,
  "Cost-Aware Contrastive Routing for LLMs", NeurIPS). Each candidate is described by a fingerprint (a *logit
  footprint*: its label distribution on a fixed probe set, :func:`logit_footprint`; or a *perplexity
  fingerprint* for black-box models, :func:`perplexity_fingerprint`); a query by its sentence embedding. Two
  small projections map both into one space, trained with a cost-banded InfoNCE: candidates are grouped into
  adaptive cost bands (quantiles of their costs), and a training query's positives are its *accurate*
  candidates in the cheapest band that has one, so the space favours the cheapest accurate expert. Routing is
  a k-NN lookup of the query among the candidate embeddings, ``argmax sim - lam * cost`` within the ``k``
  nearest; a new candidate needs only its fingerprint, no retraining.

Quality is in [0, 1] per (query, candidate) (1 = correct); cost is in the caller's unit (here: seconds of
measured latency), per (query, candidate) or per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["ContrastiveCostRouter", "FitReport", "KNNRouter", "choose_under_cost", "cost_band_positives", "cost_bands",
           "cost_spectrum_infonce", "logit_footprint", "oracle_choice", "perplexity_fingerprint"]


def _unit(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _per_model_cost(cost: Any, n_models: int) -> np.ndarray:
    c = np.asarray(cost, dtype=np.float64)
    c = c.mean(axis=0) if c.ndim == 2 else c
    if c.shape != (n_models,):
        raise ConfigError(f"cost must be (n_models,) or (n_queries, n_models) with {n_models} models, got {c.shape}")
    return c


def choose_under_cost(pred_quality: np.ndarray, pred_cost: np.ndarray, *, lam: float = 0.0,
                      budget: float | None = None) -> np.ndarray:
    """Per row, the candidate maximising ``quality - lam * cost`` among those with ``cost <= budget`` (the cheapest
    candidate when none fits); ties go to the cheaper candidate, then the lower index."""
    q = np.atleast_2d(np.asarray(pred_quality, dtype=np.float64))
    c = np.broadcast_to(np.asarray(pred_cost, dtype=np.float64), q.shape)
    util = q - lam * c
    if budget is not None:
        util = np.where(c <= budget, util, -np.inf)
    out = np.empty(len(q), dtype=np.int64)
    for i in range(len(q)):
        if not np.isfinite(util[i]).any():
            out[i] = int(np.argmin(c[i]))
            continue
        best = util[i].max()
        tied = np.flatnonzero(np.isclose(util[i], best, rtol=0, atol=1e-12))
        out[i] = int(tied[np.argmin(c[i][tied])])
    return out


def oracle_choice(quality: np.ndarray, cost: np.ndarray, *, tau: float = 0.5) -> np.ndarray:
    """Per query, the cheapest candidate whose quality >= tau (the cheapest overall when none is)."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.broadcast_to(np.asarray(cost, dtype=np.float64), q.shape)
    masked = np.where(q >= tau, c, np.inf)
    return np.where(np.isfinite(masked).any(axis=1), masked.argmin(axis=1), c.argmin(axis=1))


class KNNRouter:
    """Route by the measured quality and cost of the query's k nearest training queries."""

    def __init__(self, train_embs: Any, quality: Any, cost: Any, *, k: int = 10) -> None:
        """``train_embs`` (n, d); ``quality`` (n, M) in [0, 1]; ``cost`` (n, M) or (M,); ``k`` neighbours."""
        self.embs = _unit(train_embs)
        self.quality = np.asarray(quality, dtype=np.float64)
        if self.quality.shape[0] != len(self.embs):
            raise ConfigError(f"{self.quality.shape[0]} quality rows for {len(self.embs)} training queries")
        c = np.asarray(cost, dtype=np.float64)
        self.cost = np.broadcast_to(c, self.quality.shape) if c.ndim == 1 else c
        if self.cost.shape != self.quality.shape:
            raise ConfigError(f"cost {c.shape} does not match quality {self.quality.shape}")
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        self.k = min(k, len(self.embs))

    def predict(self, query_embs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Expected quality and cost ``(n_queries, M)`` each: means over the k nearest training queries."""
        sims = _unit(query_embs) @ self.embs.T
        nn_idx = np.argsort(-sims, axis=1, kind="stable")[:, :self.k]
        return self.quality[nn_idx].mean(axis=1), self.cost[nn_idx].mean(axis=1)

    def route(self, query_embs: Any, *, lam: float = 0.0, budget: float | None = None) -> np.ndarray:
        """The chosen candidate per query (see :func:`choose_under_cost`)."""
        q, c = self.predict(query_embs)
        return choose_under_cost(q, c, lam=lam, budget=budget)


# ----------------------------------------------------------------------------- CSCR
def logit_footprint(label_logprobs: Any) -> np.ndarray:
    """A candidate's logit footprint: its label probabilities (renormalised over labels) on a fixed probe set,
    flattened; ``label_logprobs`` is (n_probes, n_labels) (or a list of such arrays, one per task)."""
    parts = label_logprobs if isinstance(label_logprobs, (list, tuple)) else [label_logprobs]
    out = []
    for p in parts:
        x = np.asarray(p, dtype=np.float64)
        x = x - x.max(axis=-1, keepdims=True)
        out.append((np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)).ravel())
    return np.concatenate(out)


def perplexity_fingerprint(token_nll: Sequence[float]) -> np.ndarray:
    """A black-box candidate's fingerprint: its mean token negative log-likelihood on each probe text, standardised
    (zero mean, unit variance) so only the profile across probes counts."""
    x = np.asarray(token_nll, dtype=np.float64)
    return (x - x.mean()) / max(float(x.std()), 1e-12)


def cost_bands(costs: Any, n_bands: int = 3) -> np.ndarray:
    """Band index (0 = cheapest) of each candidate: adaptive bands at the quantiles of the candidates' costs."""
    c = np.asarray(costs, dtype=np.float64)
    if n_bands < 1:
        raise ConfigError(f"n_bands must be >= 1, got {n_bands}")
    edges = np.quantile(c, np.linspace(0, 1, n_bands + 1)[1:-1]) if n_bands > 1 else np.array([])
    return np.searchsorted(edges, c, side="left").astype(np.int64)


def cost_band_positives(quality: Any, bands: Any, *, tau: float = 0.5) -> np.ndarray:
    """``(n_queries, M)`` positive mask: the candidates with quality >= tau in the cheapest band that has one (an
    all-False row when no candidate is accurate)."""
    q = np.asarray(quality, dtype=np.float64)
    b = np.asarray(bands)
    acc = q >= tau
    out = np.zeros_like(acc)
    for i in range(len(q)):
        if acc[i].any():
            cheapest = b[acc[i]].min()
            out[i] = acc[i] & (b == cheapest)
    return out


def cost_spectrum_infonce(query_z: torch.Tensor, expert_z: torch.Tensor, positives: torch.Tensor, *,
                          temperature: float = 0.1) -> torch.Tensor:
    """Multi-positive InfoNCE over candidates: mean over queries of ``-log sum_pos exp(s/T) / sum_all exp(s/T)``,
    ``s`` the cosine of query and candidate embeddings; rows without a positive are ignored."""
    q = nn.functional.normalize(query_z, dim=-1)
    e = nn.functional.normalize(expert_z, dim=-1)
    logits = q @ e.T / temperature
    pos = positives.bool()
    keep = pos.any(dim=1)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    log_all = torch.logsumexp(logits[keep], dim=1)
    log_pos = torch.logsumexp(logits[keep].masked_fill(~pos[keep], float("-inf")), dim=1)
    return (log_all - log_pos).mean()


@dataclass
class FitReport:
    """What :meth:`ContrastiveCostRouter.fit` did: steps, final loss, queries skipped (no accurate candidate)."""

    steps: int
    final_loss: float
    skipped_queries: int


class ContrastiveCostRouter(nn.Module):
    """CSCR: query and candidate projections into one space, trained with the cost-banded InfoNCE."""

    def __init__(self, query_dim: int, descriptor_dim: int, *, dim: int = 64, hidden: int | None = 128) -> None:
        """``query_dim``: the sentence embedding's size; ``descriptor_dim``: the fingerprint's; ``dim``: the
        shared space; ``hidden``: the query tower's hidden width (None: linear)."""
        super().__init__()
        self.query_tower: nn.Module = (nn.Linear(query_dim, dim) if hidden is None else
                                       nn.Sequential(nn.Linear(query_dim, hidden), nn.GELU(), nn.Linear(hidden, dim)))
        self.expert_tower = nn.Linear(descriptor_dim, dim)
        self.temperature = 0.1
        self.expert_embs: np.ndarray | None = None
        self.expert_costs: np.ndarray | None = None

    def embed_queries(self, query_embs: Any) -> np.ndarray:
        """Queries (sentence embeddings) in the shared space, L2-normalised."""
        with torch.no_grad():
            z = self.query_tower(torch.as_tensor(_unit(query_embs), dtype=torch.float32))
        return _unit(z.numpy())

    def embed_experts(self, descriptors: Any) -> np.ndarray:
        """Candidates (fingerprints) in the shared space, L2-normalised."""
        with torch.no_grad():
            z = self.expert_tower(torch.as_tensor(np.asarray(descriptors, dtype=np.float64), dtype=torch.float32))
        return _unit(z.numpy())

    def fit(self, train_embs: Any, quality: Any, cost: Any, descriptors: Any, *, n_bands: int = 3,
            tau: float = 0.5, temperature: float = 0.1, epochs: int = 200, lr: float = 1e-3,
            batch_size: int = 64, weight_decay: float = 1e-4, seed: int = 0) -> FitReport:
        """Train both towers on measured ``quality`` (n, M) and ``cost`` ((n, M) or (M,); bands use the per-candidate
        mean), then index the candidates (:meth:`set_experts`)."""
        q = np.asarray(quality, dtype=np.float64)
        costs = _per_model_cost(cost, q.shape[1])
        desc = np.asarray(descriptors, dtype=np.float64)
        if desc.shape[0] != q.shape[1]:
            raise ConfigError(f"{desc.shape[0]} descriptors for {q.shape[1]} candidates")
        pos = cost_band_positives(q, cost_bands(costs, n_bands), tau=tau)
        keep = pos.any(axis=1)
        x = torch.as_tensor(_unit(train_embs)[keep], dtype=torch.float32)
        p = torch.as_tensor(pos[keep])
        d = torch.as_tensor(desc, dtype=torch.float32)
        self.temperature = temperature
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        steps, loss_v = 0, float("nan")
        self.train()
        for _ in range(epochs if len(x) else 0):
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                loss = cost_spectrum_infonce(self.query_tower(x[idx]), self.expert_tower(d), p[idx],
                                             temperature=temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps, loss_v = steps + 1, float(loss.detach())
        self.eval()
        self.set_experts(desc, costs)
        return FitReport(steps, loss_v, int((~keep).sum()))

    def set_experts(self, descriptors: Any, costs: Any) -> None:
        """Index the candidate pool (fingerprints and per-candidate costs); a changed pool needs no retraining."""
        self.expert_embs = self.embed_experts(descriptors)
        self.expert_costs = np.asarray(costs, dtype=np.float64)
        if len(self.expert_costs) != len(self.expert_embs):
            raise ConfigError(f"{len(self.expert_costs)} costs for {len(self.expert_embs)} candidates")

    def route(self, query_embs: Any, *, lam: float = 0.0, k: int | None = None,
              budget: float | None = None) -> np.ndarray:
        """k-NN lookup: among the ``k`` candidates nearest the query (None: all) that fit ``budget``, the one with the
        highest ``cosine - lam * cost``; the cheapest candidate when none fits."""
        if self.expert_embs is None or self.expert_costs is None:
            raise ConfigError("the router has no candidates: call fit() or set_experts() first")
        sims = self.embed_queries(query_embs) @ self.expert_embs.T
        if k is not None and k < sims.shape[1]:
            kth = -np.sort(-sims, axis=1)[:, k - 1:k]
            sims = np.where(sims >= kth, sims, -np.inf)
        return choose_under_cost(sims, self.expert_costs, lam=lam, budget=budget)
