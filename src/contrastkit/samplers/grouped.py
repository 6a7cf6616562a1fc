"""Batches drawn within groups: single-source, clustered and mined (community) batches.

``GroupedBatches`` is the one mechanism: examples carry a group id (their data source, their
k-means cluster, their similarity-graph community) and each batch is filled from
``groups_per_batch`` groups, so in-batch negatives come from the same source or topic and are
harder than random ones. The order depends only on ``(seed, epoch)`` and a run resumes at any
batch exactly, as with ``RandomBatches``.

- single_source: GTE (Li et al., 2023) and E5 (Wang et al., 2022) draw each batch from one source.
- clustered: "Embedding And Clustering Your Data Can Improve Contrastive Pretraining" (Merrick,
  2024): k-means on teacher embeddings, batches within a cluster (ClusterNS, Deng et al., 2023,
  clusters for negatives too).
- mined_batches: "Breaking the Batch Barrier (B3) of Contrastive Learning via Smart Batch Mining"
  (2025): a sparse kNN graph of teacher similarities, partitioned into communities (here spectral
  partitioning of the kNN graph with scikit-learn, standing in for B3's METIS), batches filled from
  a few communities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class GroupedBatches(Generic[T]):
    """Shuffled batches whose examples come from ``groups_per_batch`` groups each.

    Per epoch every group is shuffled and cut into pieces of ``batch_size // groups_per_batch``;
    pieces are shuffled and ``groups_per_batch`` consecutive pieces of different groups make a
    batch. The short tail piece of each group goes to a shared pool, which is shuffled and cut
    into mixed batches, so no example is left out; a final batch of one is dropped (as in
    ``RandomBatches``).
    """

    def __init__(self, examples: Sequence[T], groups: Sequence[int], batch_size: int, seed: int = 0,
                 groups_per_batch: int = 1) -> None:
        if len(examples) < 2:
            raise ValueError(f"need at least 2 training examples, got {len(examples)}")
        if len(groups) != len(examples):
            raise ValueError(f"need one group id per example: {len(groups)} ids for {len(examples)} examples")
        if not 1 <= groups_per_batch <= batch_size:
            raise ValueError(f"groups_per_batch must be in 1..batch_size={batch_size}, got {groups_per_batch}")
        self.examples = examples
        self.groups = np.asarray(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.groups_per_batch = groups_per_batch
        self._cache: dict[int, list[np.ndarray]] = {}

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The example indices of every batch of ``epoch``."""
        if epoch in self._cache:
            return self._cache[epoch]
        rng = np.random.default_rng([self.seed, epoch])
        piece = max(1, self.batch_size // self.groups_per_batch)
        pieces: list[np.ndarray] = []
        pool: list[np.ndarray] = []
        for g in np.unique(self.groups):
            members = rng.permutation(np.flatnonzero(self.groups == g))
            full = len(members) - len(members) % piece
            pieces.extend(members[i:i + piece] for i in range(0, full, piece))
            if full < len(members):
                pool.append(members[full:])
        order = rng.permutation(len(pieces))
        pieces = [pieces[i] for i in order]
        batches = [np.concatenate(pieces[i:i + self.groups_per_batch])
                   for i in range(0, len(pieces) - len(pieces) % self.groups_per_batch, self.groups_per_batch)]
        left = [pieces[i] for i in range(len(pieces) - len(pieces) % self.groups_per_batch, len(pieces))]
        rest = rng.permutation(np.concatenate(pool + left)) if pool or left else np.zeros(0, dtype=int)
        batches.extend(rest[i:i + self.batch_size] for i in range(0, len(rest), self.batch_size))
        batches = [b for b in batches if len(b) > 1]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = {epoch: batches}
        return batches

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches in the first epoch (later epochs may differ by a batch)."""
        return len(self.plan(0))

    def index_batches(self, epoch: int, start: int = 0) -> Iterator[np.ndarray]:
        """The example indices of the batches of ``epoch`` from batch index ``start`` on."""
        yield from self.plan(epoch)[start:]

    def batches(self, epoch: int, start: int = 0) -> Iterator[list[T]]:
        """Yield the batches of ``epoch`` from batch index ``start`` on."""
        for idx in self.index_batches(epoch, start):
            yield [self.examples[i] for i in idx]


def kmeans_groups(embeddings: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """k-means cluster id per row of L2-normalised ``embeddings`` (scikit-learn; Merrick 2024, ClusterNS)."""
    from sklearn.cluster import KMeans

    x = _normalize(embeddings)
    k = max(1, min(num_clusters, len(x)))
    return KMeans(n_clusters=k, random_state=seed, n_init=3).fit_predict(x)


def community_groups(embeddings: np.ndarray, neighbors: int, community_size: int, seed: int = 0) -> np.ndarray:
    """Community id per row: partition of the teacher's kNN similarity graph (B3-style batch mining).

    The graph links each example to its ``neighbors`` most similar others (cosine, symmetrised);
    it is split into about ``n / community_size`` communities by spectral partitioning
    (scikit-learn's ``SpectralClustering`` on the precomputed sparse affinity). Examples of one
    community are each other's strong negatives.
    """
    from scipy.sparse import csr_matrix
    from sklearn.cluster import SpectralClustering

    from ..evaluation.retrieval import search

    x = _normalize(embeddings).astype(np.float32)
    n = len(x)
    k = max(1, min(neighbors, n - 1))
    scores, idx = search(x, x, k + 1)  # exact, chunked: memory O(chunk), not O(n^2)
    scores, idx = scores.numpy(), idx.numpy()
    keep = idx != np.arange(n)[:, None]  # drop each row's self match (ties may move it)
    cols = np.stack([row[m][:k] for row, m in zip(idx, keep)])
    weights = np.stack([row[m][:k] for row, m in zip(scores, keep)])
    rows = np.repeat(np.arange(n), k)
    graph = csr_matrix((np.clip(weights.ravel(), 1e-6, None), (rows, cols.ravel())), shape=(n, n))
    graph = graph.maximum(graph.T)
    parts = max(1, min(n // max(1, community_size), n - 1))
    if parts == 1:
        return np.zeros(n, dtype=int)
    import warnings

    model = SpectralClustering(n_clusters=parts, affinity="precomputed", random_state=seed,
                               assign_labels="cluster_qr")
    with warnings.catch_warnings():  # a disconnected kNN graph is fine: its components split apart
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return model.fit_predict(graph)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


__all__ = ["GroupedBatches", "community_groups", "kmeans_groups"]
