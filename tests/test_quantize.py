"""Embedding quantization: int8 calibration, binary packing, Hamming search with rescoring."""

from __future__ import annotations

import numpy as np
import pytest

from contrastkit.encoders.quantize import (
    binary_search,
    calibration_ranges,
    dequantize_int8,
    hamming_distances,
    quantize_embeddings,
)
from contrastkit.errors import ConfigError


def clustered(n: int, dim: int = 128, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around random cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def test_int8_uses_per_dimension_ranges_and_round_trips() -> None:
    emb = clustered(500)
    emb[:, 0] *= 10  # one wide dimension must not squash the others' resolution
    ranges = calibration_ranges(emb)
    codes = quantize_embeddings(emb, "int8", ranges)
    assert codes.dtype == np.int8 and codes.min() == -128 and codes.max() == 127
    back = dequantize_int8(codes, ranges)
    step = (ranges[1] - ranges[0]) / 255
    assert np.all(np.abs(back - emb) <= step / 2 + 1e-6)
    # out-of-range values clip rather than wrap
    assert quantize_embeddings(emb[:1] + 100, "int8", ranges).max() == 127
    assert quantize_embeddings(emb, "uint8", ranges).dtype == np.uint8


def test_binary_packs_sign_bits_like_sentence_transformers() -> None:
    emb = np.array([[1.0, -1, 0.5, -0.2, 0, 3, -3, 2, 0.1]], dtype=np.float32)
    ub = quantize_embeddings(emb, "ubinary")
    assert ub.shape == (1, 2)
    assert ub[0, 0] == 0b10100101 and ub[0, 1] == 0b10000000
    b = quantize_embeddings(emb, "binary")
    assert b.dtype == np.int8 and int(b[0, 0]) == 0b10100101 - 128
    assert hamming_distances(ub, b).tolist() == [[0]]  # int8 'binary' codes are read back as bits
    other = quantize_embeddings(-emb, "ubinary")
    assert hamming_distances(ub, other)[0, 0] == 8  # all set bits flip (0 stays unset on both sides)


def test_binary_search_with_rescoring_recovers_exact_neighbours() -> None:
    data, k = clustered(3050, spread=0.5, seed=1), 10
    corpus, queries = data[:3000], data[3000:]  # queries from the same clusters, not in the corpus
    exact = np.argsort(-(queries @ corpus.T), axis=1)[:, :k]
    bits = quantize_embeddings(corpus, "ubinary")
    plain, _ = binary_search(queries, bits, k)
    rescored4, _ = binary_search(queries, bits, k, rescore=corpus, rescore_multiplier=4)
    rescored, scores = binary_search(queries, bits, k, rescore=corpus, rescore_multiplier=10)
    ranges = calibration_ranges(corpus)
    rescored8, _ = binary_search(queries, bits, k, rescore=quantize_embeddings(corpus, "int8", ranges),
                                 rescore_ranges=ranges, rescore_multiplier=10)
    r_plain, r4 = recall_at_k(plain, exact), recall_at_k(rescored4, exact)
    r_float, r_int8 = recall_at_k(rescored, exact), recall_at_k(rescored8, exact)
    assert r_float >= 0.95 and r_int8 >= 0.9, (r_float, r_int8)
    assert r_float > r4 > r_plain + 0.2, (r_plain, r4, r_float)  # rescoring more candidates helps
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    np.testing.assert_allclose(scores[:, 0], np.einsum("qd,qd->q", queries, corpus[rescored[:, 0]]), rtol=1e-5)


def test_quantize_errors_name_the_problem() -> None:
    emb = clustered(10)
    with pytest.raises(ConfigError, match="precision"):
        quantize_embeddings(emb, "int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shape"):
        quantize_embeddings(emb, "int8", np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="rescore_ranges"):
        binary_search(emb, quantize_embeddings(emb, "ubinary"), 3, rescore=quantize_embeddings(emb, "int8"))
    with pytest.raises(ConfigError, match="2-d"):
        quantize_embeddings(emb[0], "binary")
