"""Vector search: indexes (exact, FAISS flat / HNSW / IVF-PQ) and a crash-safe persistent store."""

from .index import INDEX_KINDS, METRICS, ExactIndex, FaissIndex, VectorIndex, build_index, load_index
from .store import Doc, Hit, Store

__all__ = ["INDEX_KINDS", "METRICS", "Doc", "ExactIndex", "FaissIndex", "Hit", "Store", "VectorIndex",
           "build_index", "load_index"]
