"""Vector search speed: contrastkit's exact index vs raw faiss.IndexFlatIP, and HNSW / IVF-PQ recall and speed.

Random unit 384-d vectors (1,000,000 by default), 1,000 random unit queries, top-10. Each timing
is the median of ``--runs`` runs on the same warm index. Ground truth for recall@10 is the
faiss flat result. Random Gaussian data is the hardest case for graph and quantisation
indexes (no cluster structure), so their recall here is a lower bound for real embeddings.
Keep 1,000 queries: with faiss-cpu 1.15 here, 200 queries over 50k vectors took 4x longer than
1,000 (faiss picks another kernel for small query batches), so fewer queries would flatter us.

    python benchmarks/search_speed.py            # full size (about 20-40 min on 2 cores, ~4 GB RAM)
    python benchmarks/search_speed.py --quick    # 50k vectors, about a minute

``--vectors senteval`` runs the same comparison on real embeddings instead: every distinct
sentence of the SentEval data (transfer tasks, STS pairs, SNLI dev/test; ~150k) encoded with
``--model``; ``--queries`` of them, drawn at random, are held out of the corpus as queries. The
vectors are cached under ``runs/search_speed/``. Each index's size is that of its saved files
(what ``Store`` keeps in memory and on disk), and for each recall target the table names the
smallest efSearch / nprobe reaching it.

    python benchmarks/search_speed.py --vectors senteval --threads 2
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


def _senteval_texts() -> list[str]:
    """Every distinct sentence of the local SentEval data, in a fixed order."""
    from contrastkit.evaluation.senteval import load_sts_task, resolve_senteval_dir
    from contrastkit.evaluation.sts import SIMCSE_TASKS
    from contrastkit.evaluation.transfer import TRANSFER_TASK_NAMES, load_transfer_task

    seen: dict[str, None] = {}
    for name in TRANSFER_TASK_NAMES:
        seen.update(dict.fromkeys(load_transfer_task(name).distinct_texts()))
    for name in SIMCSE_TASKS:
        for a, b in load_sts_task(name).pairs:
            seen.update(dict.fromkeys((a, b)))
    snli = resolve_senteval_dir(needed_for="the SNLI sentences") / "SNLI"
    for f in ("s1.dev", "s2.dev", "s1.test", "s2.test"):
        seen.update(dict.fromkeys(t.strip() for t in (snli / f).read_text(encoding="utf-8").splitlines()))
    seen.pop("", None)
    return list(seen)


def _embedded(texts: list[str], model: str, threads: int) -> np.ndarray:
    """Unit vectors of ``texts`` under ``model``, kept on disk by ``EmbeddingCache`` between runs."""
    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.cache import EmbeddingCache, model_fingerprint

    torch.set_num_threads(threads)
    encoder = None

    def encode(batch: list[str]) -> np.ndarray:
        nonlocal encoder
        encoder = encoder or Encoder.from_pretrained(model)  # loaded only when something is not cached
        t = time.perf_counter()
        x = encoder.encode(batch, batch_size=256, normalize=True, show_progress=True)
        print(f"encoded {len(batch)} texts in {time.perf_counter() - t:.0f} s", flush=True)
        return np.asarray(x, dtype=np.float32)

    cache = EmbeddingCache(encode, cache_dir="runs/search_speed", fingerprint=model_fingerprint(model, "unit"),
                           model_info={"model": model, "normalize": True})
    return np.asarray(cache(texts), dtype=np.float32)


def _index_mb(index) -> float:
    """Size of an index's saved files, in MB."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        index.save(Path(d) / "ix")
        return round(sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file()) / 1e6, 1)


def _smallest_reaching(sweep: list[dict], knob: str, targets: list[float]) -> dict[str, int | None]:
    """For each recall target, the smallest swept ``knob`` value whose recall@k reaches it."""
    return {str(t): next((s[knob] for s in sweep if s["recall@10"] >= t), None) for t in targets}


def _sweep(index, knob: str, values: list[int], q: np.ndarray, truth: np.ndarray, k: int, runs: int,
           stop_at: float = 2.0) -> list[dict]:
    """Recall@k and speed of ``index`` at each value of its search parameter ``knob``; stops once recall >= stop_at."""
    sweep = []
    for value in values:
        index.params[knob] = value
        index._apply_search_params()
        ts, _, (_, ids) = _median_time(lambda: index.search(q, k), runs)
        sweep.append({knob: value, "recall@10": round(_recall(ids, truth, k), 4), "search_s": round(ts, 4),
                      "qps": round(len(q) / ts, 1)})
        print(index.kind, index.params.get("m", ""), sweep[-1], flush=True)
        if sweep[-1]["recall@10"] >= stop_at:
            break
    return sweep


def _recall(got: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="corpus size (senteval: at most all but the queries)")
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
    ap.add_argument("--pq-m", type=int, nargs="+", default=None,
                    help="IVF-PQ sub-quantisers (bytes per vector), one index each (default: 48; senteval: 48 96 192)")
    ap.add_argument("--quick", action="store_true", help="50k vectors, 1000 queries, 3 runs")
    ap.add_argument("--vectors", choices=["random", "senteval"], default="random",
                    help="random unit vectors, or real embeddings of the SentEval sentences")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="encoder for --vectors senteval")
    ap.add_argument("--out", default="benchmarks/results/search_speed.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.queries, args.runs = 50_000, 1000, 3
        args.ef_search = [64, 256]
        args.nprobe = [16]
        if args.out == ap.get_default("out"):
            args.out = "benchmarks/results/search_speed_quick.json"
    if args.vectors == "senteval":
        if args.ef_search == ap.get_default("ef_search"):
            args.ef_search = [16, 32, 64, 128, 256, 512, 1024]
        if args.nprobe == ap.get_default("nprobe"):
            args.nprobe = [1, 2, 4, 8, 16, 32, 64, 128]
        if args.hnsw_m == ap.get_default("hnsw_m"):
            args.hnsw_m = 32
        if args.out == ap.get_default("out"):
            args.out = "benchmarks/results/search_speed_senteval.json"
        args.pq_m = args.pq_m or [48, 96, 192]
    args.pq_m = args.pq_m or [48 if args.dim % 48 == 0 else None]

    import faiss
    import torch

    from contrastkit.search import build_index

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    if args.vectors == "senteval":
        texts = _senteval_texts()
        texts = [texts[i] for i in rng.permutation(len(texts))[:args.queries + args.n]]
        emb = _embedded(texts, args.model, args.threads)
        q, x = emb[:args.queries], emb[args.queries:]
        args.n, args.dim = len(x), x.shape[1]
    else:
        x = _unit(rng, args.n, args.dim)
        q = _unit(rng, args.queries, args.dim)
    k = args.k
    res: dict = {"vectors": args.vectors, "n": args.n, "queries": args.queries, "dim": args.dim, "k": k,
                 "runs": args.runs, "torch_threads": torch.get_num_threads(),
                 "faiss_threads": faiss.omp_get_max_threads()}
    if args.vectors == "senteval":
        res["model"] = args.model
    targets = sorted({0.9, 0.95, 0.99, args.target_recall})

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
        "exact_recall_vs_faiss": _recall(got, truth, k), "exact_mb": _index_mb(exact),
        "raw_vectors_mb": round(x.nbytes / 1e6, 1)}
    print(json.dumps(res["exact_vs_faiss_flat"], indent=2), flush=True)
    del exact

    if "hnsw" not in args.skip:
        hn = build_index("hnsw", args.dim, M=args.hnsw_m, ef_construction=args.ef_construction)
        t = time.perf_counter()
        hn.add(x)
        build_s = time.perf_counter() - t
        sweep = _sweep(hn, "ef_search", args.ef_search, q, truth, k, args.runs, stop_at=max(targets))
        res["hnsw"] = {"M": args.hnsw_m, "ef_construction": args.ef_construction, "build_s": round(build_s, 1),
                       "index_mb": _index_mb(hn), "sweep": sweep, "target_recall": args.target_recall,
                       "smallest_ef_search_reaching": _smallest_reaching(sweep, "ef_search", targets),
                       "flat_qps": round(args.queries / t_flat, 1)}
        del hn

    if "ivfpq" not in args.skip:
        nlist = int(4 * np.sqrt(args.n))
        res["ivfpq"] = []
        for m in args.pq_m:
            iv = build_index("ivfpq", args.dim, nlist=nlist, m=m, nbits=8)
            t = time.perf_counter()
            iv.train(x[rng.choice(args.n, size=min(args.n, 50 * nlist), replace=False)])
            iv.add(x)
            build_s = time.perf_counter() - t
            sweep = _sweep(iv, "nprobe", args.nprobe, q, truth, k, args.runs)
            res["ivfpq"].append({"nlist": nlist, "m": iv.params["m"], "nbits": 8, "build_s": round(build_s, 1),
                                 "index_mb": _index_mb(iv), "sweep": sweep,
                                 "smallest_nprobe_reaching": _smallest_reaching(sweep, "nprobe", targets)})
            del iv

    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(), "results": res}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
