"""Clustering evaluation: V-measure of k-means on embeddings against gold labels."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from contrastkit.evaluation.clustering import cluster_scores, evaluate_clustering, load_clustering_task
from contrastkit.evaluation.senteval import resolve_senteval_dir

try:
    HAVE_DATA = (resolve_senteval_dir() / "TREC").is_dir() and (resolve_senteval_dir() / "SST").is_dir()
except Exception:  # noqa: BLE001
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="SentEval data (../shared/data/senteval) missing")


def _noise(texts: list[str], dim: int = 16) -> np.ndarray:
    return np.stack([np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                                          "little")).standard_normal(dim) for t in texts])


def _oracle(name: str):
    texts, labels = load_clustering_task(name)
    label_of = dict(zip(texts, labels.tolist()))
    centers = 10 * np.random.default_rng(1).standard_normal((int(labels.max()) + 1, 16))
    return lambda batch: _noise(batch) + centers[[label_of[t] for t in batch]]


def test_cluster_scores_on_synthetic_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    centers = 8 * rng.standard_normal((4, 10))
    sep = cluster_scores(centers[labels] + rng.standard_normal((200, 10)), labels, n_runs=3)
    mixed = cluster_scores(rng.standard_normal((200, 10)), labels, n_runs=3)
    assert sep["v_measure"] > 95 and sep["k"] == 4 and sep["n"] == 200
    assert mixed["v_measure"] < 10
    with pytest.raises(ValueError, match="labels"):
        cluster_scores(np.zeros((3, 2)), np.zeros(3))


@needs_data
def test_tasks_and_label_counts():
    texts, labels = load_clustering_task("TREC")
    assert len(texts) == 5952 and len(np.unique(labels)) == 6
    texts, labels = load_clustering_task("SST-fine")
    assert len(texts) == 11855 and len(np.unique(labels)) == 5


@needs_data
def test_evaluate_clustering_signal_noise_and_determinism():
    good = evaluate_clustering(_oracle("TREC"), ["TREC"], limit=600, n_runs=2)
    bad = evaluate_clustering(_noise, ["TREC", "SST-fine"], limit=600, n_runs=2)
    again = evaluate_clustering(_noise, ["TREC", "SST-fine"], limit=600, n_runs=2)
    assert good.tasks["TREC"].v_measure > 90
    assert bad.tasks["TREC"].v_measure < 10
    d1, d2 = bad.to_dict(), again.to_dict()
    d1.pop("elapsed_s"), d2.pop("elapsed_s"), d1.pop("encode_s"), d2.pop("encode_s")
    assert d1 == d2
    assert d1["suite"] == "clustering" and d1["main_metric"] == "v_measure"
    assert d1["average"] == pytest.approx(np.mean([d1["tasks"][t]["v_measure"] for t in ("TREC", "SST-fine")]))
    json.dumps(d1)
    assert "| SST-fine |" in bad.to_markdown()
    with pytest.raises(ValueError, match="unknown clustering task"):
        evaluate_clustering(_noise, ["MR"])
