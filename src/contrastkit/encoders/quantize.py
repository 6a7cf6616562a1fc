"""Embedding quantization for storage and search: int8 (calibrated per dimension) and binary.

* int8: each dimension's [min, max] (from ``ranges`` or the embeddings themselves) is cut
  into 256 steps, as sentence-transformers' ``quantize_embeddings`` does.
* binary: one sign bit per dimension packed 8 to a byte (``np.packbits``); search by Hamming
  distance, then rescore the best ``k * rescore_multiplier`` candidates with the float query
  against float or int8 corpus vectors (Shakir, Aarsen and Lee, "Binary and Scalar Embedding
  Quantization for Significantly Faster & Cheaper Retrieval", Hugging Face blog, 2024;
  Yamada et al., "Efficient Passage Retrieval with Hashing for Open-domain QA", ACL 2021).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import ConfigError

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def calibration_ranges(emb: np.ndarray) -> np.ndarray:
    """Per-dimension (2, dim) array of [min; max] over calibration embeddings."""
    emb = _as_matrix(emb, "emb")
    return np.stack([emb.min(0), emb.max(0)])


def quantize_embeddings(emb: np.ndarray, precision: Precision, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize (n, dim) float embeddings to ``precision``.

    'int8'/'uint8': 256 levels per dimension over ``ranges`` ((2, dim): mins, maxs; default:
    the embeddings' own); values outside the range are clipped. 'binary' (int8 storage, as
    sentence-transformers: packed bits - 128) / 'ubinary' (uint8): sign bits, packed, (n, ceil(dim/8)).
    """
    emb = _as_matrix(emb, "emb")
    if precision == "float32":
        return emb.astype(np.float32)
    if precision in ("int8", "uint8"):
        if ranges is None:
            ranges = calibration_ranges(emb)
        ranges = np.asarray(ranges, dtype=np.float32)
        if ranges.shape != (2, emb.shape[1]):
            raise ConfigError(f"ranges must have shape (2, {emb.shape[1]}), got {ranges.shape}")
        starts, steps = _steps(ranges)
        levels = np.clip(np.round((emb - starts) / steps), 0, 255)
        return (levels - 128).astype(np.int8) if precision == "int8" else levels.astype(np.uint8)
    if precision in ("binary", "ubinary"):
        bits = np.packbits(emb > 0, axis=-1)
        return (bits.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else bits
    raise ConfigError(f"unknown precision '{precision}'; use float32, int8, uint8, binary or ubinary")


def dequantize_int8(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Approximate float embeddings back from int8 codes and the ranges used to make them."""
    starts, steps = _steps(np.asarray(ranges, dtype=np.float32))
    return (codes.astype(np.float32) + 128) * steps + starts


def hamming_distances(query_bits: np.ndarray, corpus_bits: np.ndarray) -> np.ndarray:
    """(q, n) Hamming distances between packed bit rows (uint8, or int8 'binary' codes)."""
    q, c = _as_ubits(query_bits), _as_ubits(corpus_bits)
    if q.shape[1] != c.shape[1]:
        raise ConfigError(f"query has {q.shape[1]} bytes per vector, corpus {c.shape[1]}")
    out = np.empty((q.shape[0], c.shape[0]), dtype=np.int32)
    for i in range(q.shape[0]):  # row at a time keeps memory at n x bytes
        out[i] = _POPCOUNT[np.bitwise_xor(c, q[i])].sum(1, dtype=np.int32)
    return out


def binary_search(query_emb: np.ndarray, corpus_bits: np.ndarray, k: int = 10, *,
                  rescore: np.ndarray | None = None, rescore_multiplier: int = 4,
                  rescore_ranges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` corpus rows for each float query: Hamming search on sign bits, then optional rescoring.

    ``rescore``: the corpus as float32 or int8 (with ``rescore_ranges``) vectors; the best
    ``k * rescore_multiplier`` Hamming candidates are re-ranked by dot product with the float
    query. Without it, the Hamming ranking is returned. Returns (indices, scores), each (q, k);
    scores are dot products when rescored, else negative Hamming distances.
    """
    query_emb = _as_matrix(query_emb, "query_emb")
    n = len(corpus_bits)
    if k < 1 or rescore_multiplier < 1:
        raise ConfigError(f"k ({k}) and rescore_multiplier ({rescore_multiplier}) must be >= 1")
    k = min(k, n)
    dist = hamming_distances(quantize_embeddings(query_emb, "ubinary"), corpus_bits)
    if rescore is None:
        idx = _top_k(-dist, k)
        return idx, -np.take_along_axis(dist, idx, 1).astype(np.float32)
    if len(rescore) != n:
        raise ConfigError(f"rescore has {len(rescore)} rows but the corpus has {n}")
    cand = _top_k(-dist, min(n, k * rescore_multiplier))
    vectors = rescore
    if rescore.dtype == np.int8:
        if rescore_ranges is None:
            raise ConfigError("int8 rescore vectors need rescore_ranges (the ranges used to quantize them)")
        vectors = dequantize_int8(rescore, rescore_ranges)
    scores = np.einsum("qd,qcd->qc", query_emb, np.asarray(vectors, dtype=np.float32)[cand])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cand, order, 1), np.take_along_axis(scores, order, 1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _steps(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = ranges[0]
    steps = np.maximum((ranges[1] - ranges[0]) / 255, np.finfo(np.float32).tiny)
    return starts, steps


def _as_ubits(bits: np.ndarray) -> np.ndarray:
    bits = np.asarray(bits)
    if bits.dtype == np.int8:  # sentence-transformers' 'binary': packed bits - 128
        return (bits.astype(np.int16) + 128).astype(np.uint8)
    if bits.dtype != np.uint8 or bits.ndim != 2:
        raise ConfigError(f"packed bits must be a 2-d uint8 or int8 array, got {bits.dtype} {bits.shape}")
    return bits


def _as_matrix(emb: np.ndarray, name: str) -> np.ndarray:
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2:
        raise ConfigError(f"{name} must be a 2-d (n, dim) array, got shape {emb.shape}")
    return emb
