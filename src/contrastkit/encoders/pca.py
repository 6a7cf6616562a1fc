"""Dimension reduction of a generalist embedding model: PCA fitted on a corpus and saved with the model, or truncation.

Generalist embeddings are large; for recommendation and search they are often reduced. The usual
choices are keeping the first ``d`` components (truncation, which only works well for Matryoshka-trained
models: Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022) and projecting onto the
top-``d`` principal components of embeddings of a representative corpus, which "Do We Really Need
Specialization? Evaluating Generalist Text Embeddings for Zero-Shot Recommendation and Search"
finds keeps the most informative directions and reduces noise.

:func:`add_pca` appends the projection to the encoder as sentence-transformers steps after pooling
(``Normalize`` when PCA is fitted on unit vectors, then a ``Dense`` with identity activation:
``W = components``, ``b = -W mean``), so ``encoder.save(path)`` writes it and both
``Encoder.from_pretrained(path)`` and ``SentenceTransformer(path)`` restore the reduced model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .st_module import Dense, Normalize

__all__ = ["PCAProjection", "add_pca", "fit_pca", "truncate"]


@dataclass
class PCAProjection:
    """A fitted PCA: ``mean`` (d,), ``components`` (k, d) (rows: principal axes), explained variance (k,)."""

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    normalize_input: bool
    whiten: bool

    @property
    def weight(self) -> np.ndarray:
        """The projection matrix (k, d) (divided by the components' standard deviations when whitening)."""
        if self.whiten:
            return self.components / np.sqrt(np.maximum(self.explained_variance, 1e-12))[:, None]
        return self.components

    def transform(self, x: Any) -> np.ndarray:
        """Project rows of ``x`` (unit-normalised first when fitted that way)."""
        a = np.asarray(x, dtype=np.float64)
        if self.normalize_input:
            a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        return (a - self.mean) @ self.weight.T

    def dense(self) -> Dense:
        """The projection as a sentence-transformers ``Dense`` step (identity activation)."""
        k, d = self.components.shape
        layer = Dense(d, k, bias=True, activation=nn.Identity())
        w = torch.tensor(self.weight, dtype=torch.float32)
        with torch.no_grad():
            layer.linear.weight.copy_(w)
            layer.linear.bias.copy_(-(w @ torch.tensor(self.mean, dtype=torch.float32)))
        return layer


def fit_pca(embeddings: Any, dim: int, *, normalize_input: bool = True, whiten: bool = False,
            seed: int = 0) -> PCAProjection:
    """Fit PCA (scikit-learn, exact SVD) with ``dim`` components on ``embeddings`` (n, d); rows unit-normalised first
    by default (the geometry cosine search uses)."""
    from sklearn.decomposition import PCA

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"PCA needs an (n, d) embedding matrix, got shape {x.shape}")
    if not 1 <= dim <= min(x.shape):
        raise ConfigError(f"PCA dim must be in 1..min(n_texts, d) = {min(x.shape)}, got {dim}")
    if normalize_input:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pca = PCA(n_components=dim, svd_solver="full", random_state=seed).fit(x)
    return PCAProjection(pca.mean_, pca.components_, pca.explained_variance_, normalize_input, whiten)


def add_pca(encoder: Any, corpus: Sequence[str] | np.ndarray, dim: int, *, whiten: bool = False,
            batch_size: int = 64) -> PCAProjection:
    """Fit PCA on ``corpus`` (texts, or the encoder's un-normalised embeddings of them) and append it to ``encoder``.

    Afterwards ``encoder.dim == dim`` and ``encoder.save`` stores the projection with the model.
    Returns the fitted projection.
    """
    if isinstance(corpus, np.ndarray):
        emb = corpus
    else:
        emb = encoder.encode(list(corpus), batch_size=batch_size, normalize=False, precision="fp32")
    proj = fit_pca(emb, dim, whiten=whiten)
    steps = list(encoder.post) if encoder.post is not None else []
    encoder.post = nn.Sequential(*steps, Normalize(), proj.dense())
    return proj


def truncate(embeddings: Any, dim: int, *, normalize: bool = True) -> np.ndarray:
    """The first ``dim`` components of each row (Matryoshka-style), re-normalised to unit length by default."""
    a = np.asarray(embeddings, dtype=np.float32)[:, :dim]
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12) if normalize else a
