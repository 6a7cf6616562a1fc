"""PCA dimension reduction saved with the model (contrastkit and sentence-transformers restore it) vs truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contrastkit.encoders import Encoder
from contrastkit.encoders.pca import add_pca, fit_pca, truncate
from contrastkit.errors import ConfigError

from conftest import make_sentences


def test_fit_pca_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    proj = fit_pca(x, 3, normalize_input=False)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for got, want in zip(proj.components, vt[:3]):  # the same axes up to sign
        assert abs(abs(float(got @ want)) - 1) < 1e-9
    np.testing.assert_allclose(proj.explained_variance, s[:3] ** 2 / 49, rtol=1e-9)
    z = proj.transform(x)
    np.testing.assert_allclose(z.var(0, ddof=1), proj.explained_variance, rtol=1e-9)
    white = fit_pca(x, 3, normalize_input=False, whiten=True).transform(x)
    np.testing.assert_allclose(white.var(0, ddof=1), 1.0, rtol=1e-9)
    with pytest.raises(ConfigError, match="dim"):
        fit_pca(x, 7)


def test_truncate() -> None:
    x = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 5.0]])
    np.testing.assert_allclose(truncate(x, 2), [[0.6, 0.8], [1.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(truncate(x, 2, normalize=False), [[3, 4], [1, 0]])


def test_pca_is_saved_with_the_model(tiny_bert: Path, tmp_path: Path, one_thread: None) -> None:
    from sentence_transformers import SentenceTransformer

    enc = Encoder.from_pretrained(str(tiny_bert))
    corpus, texts = make_sentences(60, seed=1), make_sentences(7, seed=2)
    raw = enc.encode(texts, precision="fp32")
    proj = add_pca(enc, corpus, 8)
    assert enc.dim == 8
    got = enc.encode(texts, precision="fp32")
    np.testing.assert_allclose(got, proj.transform(raw), atol=1e-5)
    path = enc.save(tmp_path / "pca-model")
    again = Encoder.from_pretrained(str(path))
    assert again.dim == 8
    np.testing.assert_allclose(again.encode(texts, precision="fp32"), got, atol=1e-5)
    st = SentenceTransformer(str(path), device="cpu")
    np.testing.assert_allclose(st.encode(texts), got, atol=1e-5)
