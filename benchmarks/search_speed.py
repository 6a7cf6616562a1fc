"""Vector search speed: contrastkit's exact index vs raw faiss.IndexFlatIP, and HNSW / IVF-PQ recall and speed.

Random unit 384-d vectors (1,000,000 by default), 1,000 random unit queries, top-10. Each timing
is the median of ``--runs`` runs on the same warm index. Ground truth for recall@10 is the
faiss flat result. Random Gaussian data is the hardest case for graph and quantisation
indexes (no cluster structure), so their recall here is a lower bound for real embeddings.
Keep 1,000 queries: with faiss-cpu 1.15 here, 200 queries over 50k vectors took 4x longer than
1,000 (faiss picks another kernel for small query batches), so fewer queries would flatter us.

    python benchmarks/search_speed.py            # full size (about 20-40 min on 2 cores, ~4 GB RAM)
    python benchmarks/search_speed.py --quick    # 50k vectors, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _median_time(fn, runs: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), [round(t, 4) for t in times], out


def _recall(got: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--hnsw-m", type=int, default=64,
                    help="graph degree: random high-dimensional data needs a dense graph")
    ap.add_argument("--ef-construction", type=int, default=64)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[2048, 4096, 8192, 16384],
                    help="tried in order; the sweep stops at the first that reaches --target-recall")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and faiss (OpenMP) threads")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--skip", nargs="*", default=[], choices=["hnsw", "ivfpq"])
    ap.add_argument("--quick", action="store_true", help="50k vectors, 1000 queries, 3 runs")
    ap.add_argument("--out", default="benchmarks/results/search_speed.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.runs = 50_000, 1000, 3
        args.ef_search = [64, 256]
        args.nprobe = [16]
        if args.out == ap.get_default("out"):
            args.out = "benchmarks/results/search_speed_quick.json"

    import faiss
    import torch

    from contrastkit.search import build_index

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x = _unit(rng, args.n, args.dim)
    q = _unit(rng, args.queries, args.dim)
    k = args.k
    res: dict = {"n": args.n, "queries": args.queries, "dim": args.dim, "k": k, "runs": args.runs,
                 "torch_threads": torch.get_num_threads(), "faiss_threads": faiss.omp_get_max_threads()}

    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    exact = build_index("exact", args.dim)
    exact.add(x)
    runs_flat, runs_exact = [], []
    for _ in range(args.runs):  # interleaved, so load drift on a shared machine hits both alike
        t_f, _, (_, truth) = _median_time(lambda: flat.search(q, k), 1)
        t_e, _, (_, got) = _median_time(lambda: exact.search(q, k), 1)
        runs_flat.append(round(t_f, 4))
        runs_exact.append(round(t_e, 4))
    t_flat, t_exact = statistics.median(runs_flat), statistics.median(runs_exact)
    res["exact_vs_faiss_flat"] = {
        "faiss_flat_s": round(t_flat, 4), "faiss_flat_runs": runs_flat,
        "contrastkit_exact_s": round(t_exact, 4), "contrastkit_exact_runs": runs_exact,
        "ratio_exact_over_faiss": round(t_exact / t_flat, 3),
        "exact_recall_vs_faiss": _recall(got, truth, k)}
    print(json.dumps(res["exact_vs_faiss_flat"], indent=2), flush=True)
    del exact

    if "hnsw" not in args.skip:
        hn = build_index("hnsw", args.dim, M=args.hnsw_m, ef_construction=args.ef_construction)
        t = time.perf_counter()
        hn.add(x)
        build_s = time.perf_counter() - t
        sweep = []
        for ef in args.ef_search:
            hn.params["ef_search"] = ef
            hn._apply_search_params()
            ts, _, (_, ids) = _median_time(lambda: hn.search(q, k), args.runs)
            sweep.append({"ef_search": ef, "recall@10": round(_recall(ids, truth, k), 4), "search_s": round(ts, 4),
                          "qps": round(args.queries / ts, 1)})
            print("hnsw", sweep[-1], flush=True)
            if sweep[-1]["recall@10"] >= args.target_recall:
                break
        ok = [s for s in sweep if s["recall@10"] >= args.target_recall]
        res["hnsw"] = {"M": args.hnsw_m, "ef_construction": args.ef_construction, "build_s": round(build_s, 1),
                       "sweep": sweep, "target_recall": args.target_recall,
                       "smallest_ef_search_reaching_target": ok[0]["ef_search"] if ok else None,
                       "flat_qps": round(args.queries / t_flat, 1)}
        del hn

    if "ivfpq" not in args.skip:
        nlist = int(4 * np.sqrt(args.n))
        iv = build_index("ivfpq", args.dim, nlist=nlist, m=48 if args.dim % 48 == 0 else None, nbits=8)
        t = time.perf_counter()
        iv.train(x[rng.choice(args.n, size=min(args.n, 50 * nlist), replace=False)])
        iv.add(x)
        build_s = time.perf_counter() - t
        sweep = []
        for nprobe in args.nprobe:
            iv.params["nprobe"] = nprobe
            iv._apply_search_params()
            ts, _, (_, ids) = _median_time(lambda: iv.search(q, k), args.runs)
            sweep.append({"nprobe": nprobe, "recall@10": round(_recall(ids, truth, k), 4), "search_s": round(ts, 4),
                          "qps": round(args.queries / ts, 1)})
            print("ivfpq", sweep[-1], flush=True)
        res["ivfpq"] = {"nlist": nlist, "m": iv.params["m"], "nbits": 8, "build_s": round(build_s, 1), "sweep": sweep}

    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(), "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
