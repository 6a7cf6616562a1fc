"""PCA vs truncation: paraphrase-retrieval nDCG@10 of a generalist embedding model reduced to 32/64/128/256 dims.

PCA is fitted on a corpus disjoint from the test sets (default: Bible training-book verses and WordNet
glosses, ``--fit-corpus``) exactly as ``contrastkit.encoders.pca.add_pca`` saves it with a model
(unit-normalised embeddings -> centred projection), and the reduced vectors are searched by cosine.
Truncation keeps the first d components and re-normalises. The full-dimension row is the reference.

    python benchmarks/pca_dims.py [--model all-MiniLM-L6-v2] [--dims 32 64 128 256] [--limit Q --max-corpus N]

Writes ``benchmarks/results/pca_dims.json`` (``--out``) with the machine and package versions.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from _tasks import exclude_self, load_tasks, md_table  # noqa: E402

TASKS = ["STSB-paraphrase", "SICK-paraphrase", "MRPC-paraphrase", "Bible-KJV-WEB"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--dims", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--fit-corpus", default="bible-train,wordnet", help="comma-separated embedded corpora")
    ap.add_argument("--fit-size", type=int, default=20_000, help="texts sampled from the fit corpus")
    ap.add_argument("--limit", type=int, default=None, help="queries per task (smoke runs)")
    ap.add_argument("--max-corpus", type=int, default=None, help="documents per task (smoke runs)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/pca_dims.json")
    args = ap.parse_args()

    import torch

    from contrastkit.data.embedded import embedded_corpus
    from contrastkit.encoders import Encoder
    from contrastkit.encoders.pca import fit_pca, truncate
    from contrastkit.evaluation.cache import EmbeddingCache
    from contrastkit.evaluation.retrieval import evaluate_retrieval

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    enc = Encoder.from_pretrained(args.model)
    full = enc.dim
    dims = [d for d in args.dims if d < full]
    fit_texts: list[str] = []
    for name in args.fit_corpus.split(","):
        fit_texts += embedded_corpus(name)
    fit_texts = random.Random(0).sample(fit_texts, min(args.fit_size, len(fit_texts)))
    raw = EmbeddingCache(lambda t: enc.encode(t, normalize=False, precision="fp32"))
    t_fit = time.perf_counter()
    pca = fit_pca(raw(fit_texts), max(dims))  # principal axes are nested: the top-d are the first d rows
    fit_s = time.perf_counter() - t_fit
    tasks, skipped = load_tasks(args.tasks, args.limit, args.max_corpus)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def reduce(kind: str, d: int) -> Callable[[np.ndarray], np.ndarray]:
        if kind == "pca":
            return lambda x: unit(pca.transform(x)[:, :d])
        return lambda x: truncate(x, d) if d < full else unit(x)

    variants = {f"full ({full})": reduce("trunc", full)}
    for d in dims:
        variants[f"pca-{d}"] = reduce("pca", d)
        variants[f"trunc-{d}"] = reduce("trunc", d)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, task in tasks.items():
        results[name] = {}
        for label, fn in variants.items():
            m = evaluate_retrieval(lambda t, fn=fn: fn(np.asarray(raw(t))), task,
                                   ignore_identical_ids=exclude_self(task))
            results[name][label] = {"ndcg@10": m["ndcg@10"], "mrr@10": m["mrr@10"], "n_queries": m["n_queries"],
                                    "n_corpus": m["n_corpus"]}
        print(name, {k: round(v["ndcg@10"], 2) for k, v in results[name].items()}, flush=True)
    header = ["dims", *tasks, "mean"]
    rows = []
    for label in variants:
        vals = [results[t][label]["ndcg@10"] for t in tasks]
        rows.append([label, *vals, float(np.mean(vals)) if vals else float("nan")])
    table = md_table(header, rows)
    print(table)
    out = {"benchmark": "pca_dims", "date": str(date.today()), "machine": cpu_model(), "versions": versions(),
           "args": vars(args), "model": args.model, "full_dim": full, "fit_texts": len(fit_texts),
           "fit_s": round(fit_s, 2), "explained_variance_ratio_at": {
               str(d): float(pca.explained_variance[:d].sum() / np.var(unit(np.asarray(raw(fit_texts))), axis=0,
                                                                      ddof=1).sum()) for d in dims},
           "results": results, "skipped": skipped, "table_ndcg@10": table,
           "wall_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
