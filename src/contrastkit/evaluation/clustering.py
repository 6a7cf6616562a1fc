"""Clustering evaluation: k-means on sentence embeddings, V-measure against gold labels.

The method follows MTEB's clustering tasks (Muennighoff et al., 2023, "MTEB: Massive Text
Embedding Benchmark", EACL): k-means with as many clusters as gold labels on the raw
(un-normalised) embeddings, scored by V-measure (Rosenberg & Hirschberg, 2007, EMNLP), the
harmonic mean of homogeneity and completeness; x 100 here like the other suites.

Tasks, from SentEval's downstream data (text as :mod:`contrastkit.evaluation.transfer` reads it):

* ``TREC``: the 5,952 questions of TREC's train and test files, 6 coarse classes
  (ABBR, DESC, ENTY, HUM, LOC, NUM);
* ``SST-fine``: the 11,855 sentences of SST's fine-grained train, dev and test splits,
  5 sentiment classes.

A k-means result depends on its initialisation, so each task runs ``n_runs`` k-means
(k-means++ init, one init each, seeds ``seed, seed + 1, ...``) and reports the mean V-measure
and its standard deviation over the runs (MTEB similarly averages its ten bootstrapped
clusterings of each task). With ``seed`` fixed the numbers are identical run to run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, v_measure_score
from threadpoolctl import threadpool_limits

from contrastkit.errors import DataError
from contrastkit.evaluation.results import TableResults
from contrastkit.evaluation.senteval import DataNotFoundError
from contrastkit.evaluation.sts import _encode_checked
from contrastkit.evaluation.transfer import load_transfer_task

__all__ = ["CLUSTERING_TASKS", "ClusteringResults", "ClusteringScore", "cluster_scores", "evaluate_clustering",
           "load_clustering_task"]

EncodeFn = Callable[[list[str]], Any]

CLUSTERING_TASKS: tuple[str, ...] = ("TREC", "SST-fine")
"""Clustering tasks :func:`evaluate_clustering` knows."""


def load_clustering_task(name: str, data_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Sentences and integer gold labels of one clustering task (all splits of its source)."""
    if name not in CLUSTERING_TASKS:
        raise ValueError(f"unknown clustering task {name!r}; expected one of {', '.join(CLUSTERING_TASKS)}")
    task = load_transfer_task("TREC" if name == "TREC" else "SST5", data_dir, needed_for=f"clustering task {name}")
    return task.labelled()


def cluster_scores(emb: np.ndarray, labels: np.ndarray, *, n_runs: int = 5, seed: int = 0) -> dict[str, float]:
    """Mean and std over ``n_runs`` seeded k-means (k = number of labels) of V-measure and ARI, x 100."""
    emb = np.asarray(emb, dtype=np.float32)
    labels = np.asarray(labels)
    if emb.ndim != 2 or len(emb) != len(labels):
        raise ValueError(f"expected an (n, d) array for {len(labels)} labels, got shape {emb.shape}")
    k = len(np.unique(labels))
    if k < 2 or len(labels) < k:
        raise ValueError(f"need at least two labels and one example per cluster; got {k} labels, {len(labels)} rows")
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1, got {n_runs}")
    vm, ari = [], []
    for r in range(n_runs):
        # One thread: these k-means are small, and OpenMP threads on a busy machine cost 10-100x.
        with threadpool_limits(limits=1):
            pred = KMeans(n_clusters=k, n_init=1, random_state=seed + r).fit_predict(emb)
        vm.append(100 * v_measure_score(labels, pred))
        ari.append(100 * adjusted_rand_score(labels, pred))
    return {"v_measure": float(np.mean(vm)), "v_measure_std": float(np.std(vm)), "ari": float(np.mean(ari)),
            "n": int(len(labels)), "k": int(k), "n_runs": int(n_runs)}


@dataclass
class ClusteringScore:
    """One task's clustering result (V-measure and ARI x 100, mean over k-means runs)."""

    name: str
    metrics: dict[str, float]

    @property
    def v_measure(self) -> float:
        """Mean V-measure x 100."""
        return self.metrics["v_measure"]


@dataclass
class ClusteringResults(TableResults):
    """Results of :func:`evaluate_clustering`: per-task V-measure, average and timings."""

    tasks: dict[str, ClusteringScore]
    elapsed_s: float = 0.0
    encode_s: float = 0.0
    seed: int = 0
    n_runs: int = 5
    skipped: dict[str, str] = field(default_factory=dict)

    suite = "clustering"
    main_metric = "v_measure"
    columns = ("v_measure", "v_measure_std", "ari", "k", "n")

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """Per-task metrics: v_measure (mean), v_measure_std, ari, n, k, n_runs."""
        return {name: dict(t.metrics) for name, t in self.tasks.items()}

    def extra_dict(self) -> dict[str, Any]:
        """Protocol and timings."""
        return {"protocol": f"k-means (k = #labels, k-means++, {self.n_runs} seeded runs from {self.seed}) on raw "
                            "embeddings; V-measure x100 (MTEB clustering)",
                "encode_s": round(self.encode_s, 3), "seed": self.seed, "n_runs": self.n_runs}

    @property
    def note(self) -> str:  # type: ignore[override]
        """Footnote of the Markdown table."""
        return (f"V-measure x100 of k-means clusters, mean (and std) over {self.n_runs} seeds from {self.seed}; "
                f"encode {self.encode_s:.1f} s.")


def evaluate_clustering(encode: EncodeFn, tasks: Sequence[str] = CLUSTERING_TASKS,
                        data_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, n_runs: int = 5,
                        limit: int | None = None, progress: bool = False,
                        skip_missing: bool = False) -> ClusteringResults:
    """Cluster each task's sentences with k-means and score V-measure against the gold labels.

    ``limit`` keeps that many random sentences per task (quick checks and tests only). With
    ``skip_missing`` a task whose data is missing is listed in ``skipped`` (all missing still raises).
    """
    t0 = time.perf_counter()
    out: dict[str, ClusteringScore] = {}
    encode_s = 0.0
    it: Any = tasks
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(tasks, desc="clustering", unit="task")
    skipped: dict[str, str] = {}
    for name in it:
        try:
            texts, labels = load_clustering_task(name, data_dir)
        except DataNotFoundError as err:
            if not skip_missing or len(skipped) + 1 == len(tasks):
                raise
            skipped[name] = str(err).splitlines()[0]
            continue
        if limit is not None and limit < len(texts):
            idx = np.sort(np.random.default_rng(seed).choice(len(texts), limit, replace=False))
            texts, labels = [texts[i] for i in idx], labels[idx]
        distinct = list(dict.fromkeys(texts))
        t1 = time.perf_counter()
        arr = _encode_checked(encode, distinct)
        encode_s += time.perf_counter() - t1
        if not np.isfinite(arr).all():
            raise DataError(f"{name}: encode returned non-finite values (NaN or inf)")
        row = {t: i for i, t in enumerate(distinct)}
        emb = arr[[row[t] for t in texts]]
        out[name] = ClusteringScore(name, cluster_scores(emb, labels, n_runs=n_runs, seed=seed))
    return ClusteringResults(out, elapsed_s=time.perf_counter() - t0, encode_s=encode_s, seed=seed, n_runs=n_runs,
                             skipped=skipped)
