"""Sharded encode throughput: Ray Data (``--workers`` actors, a local Ray) vs the local process pool.

Both engines encode the same texts into the same shard layout with the same model, batch size and
number of workers (processes or actors, one torch thread each on this machine's CPUs), runs
interleaved (ray, local, ray, local, ...) so that load drift on a shared machine hits both alike;
the median of ``--repeats`` runs is reported. Timed scope: the whole call a user makes
(``encode_ray`` / ``run_sharded``), i.e. process or Ray start, model loading in every worker,
encoding and writing shards; also reported is the encode-only time (the workers' own seconds from
the shard markers, summed) and the ratio ray / local of both throughputs. Every Ray run also checks
its vectors against the local run's (cosine, same rows).

Texts: deterministic pseudo-sentences (8-24 words of a 300-word vocabulary), so no data is needed.

    python benchmarks/ray_encode.py [--model all-MiniLM-L6-v2] [--n 20000] [--repeats 3] [--quick]
        [--out benchmarks/results/ray_encode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

from contrastkit.encoding import load_shards, run_sharded  # noqa: E402
from contrastkit.encoding.ray_engine import encode_ray  # noqa: E402


def texts(n: int, seed: int = 0) -> list[str]:
    """``n`` deterministic pseudo-sentences."""
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pu") for b in
             ("", "n", "r", "s", "t", "la", "ro", "mi", "ke", "do", "pa", "su", "ti", "vo", "na", "ge", "bi", "lu",
              "mo", "ra", "se", "to", "ve", "zo", "ha", "je", "ki", "li", "ma", "ne")]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(8, 24))) + "." for _ in range(n)]


def one_run(engine: str, model: str, src: Path, out: Path, *, workers: int, shard_size: int,
            batch_size: int) -> dict[str, float]:
    """Encode ``src`` into a fresh ``out`` with one engine; wall seconds and the workers' encode seconds."""
    shutil.rmtree(out, ignore_errors=True)
    common = dict(shard_size=shard_size, batch_size=batch_size, precision="fp32", show_progress=False)
    t0 = time.perf_counter()
    if engine == "ray":
        res = encode_ray(model, src, out, workers=workers, object_store_mb=200, **common)
    else:
        res = run_sharded(model, src, out, workers=workers, **common)
    wall = time.perf_counter() - t0
    assert res.complete, res
    manifest = json.loads((out / "manifest.json").read_text())
    encode = sum(m["seconds"] for m in manifest["completed"].values())
    return {"wall_s": round(wall, 3), "encode_s": round(encode, 3), "rows": res.total_rows}


def main() -> None:
    """Run both engines interleaved and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=2_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="--n 1200 --shard-size 200 --repeats 3")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.n, args.shard_size, args.repeats = 1200, 200, 3
    out_path = Path(args.out or f"benchmarks/results/ray_encode{'_quick' if args.quick else ''}.json")
    work = Path(tempfile.mkdtemp(prefix="ray_encode_"))
    try:
        src = work / "texts.txt"
        src.write_text("\n".join(texts(args.n)) + "\n")
        runs: dict[str, list[dict[str, float]]] = {"ray": [], "local": []}
        cosine_min = 1.0
        for r in range(args.repeats):
            for engine in ("ray", "local"):
                runs[engine].append(one_run(engine, args.model, src, work / engine, workers=args.workers,
                                            shard_size=args.shard_size, batch_size=args.batch_size))
                print(r, engine, runs[engine][-1], flush=True)
            a, b = load_shards(work / "ray"), load_shards(work / "local")
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            rows_equal = all(np.array_equal(np.load(work / "ray" / p.name), np.load(p))
                             for p in (work / "local").glob("*.rows.npy"))
            assert rows_equal, "ray and local rows differ"
            cosine_min = min(cosine_min, float(cos.min()))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(engine: str) -> dict[str, float]:
        wall = statistics.median(x["wall_s"] for x in runs[engine])
        enc = statistics.median(x["encode_s"] for x in runs[engine])
        return {"median_wall_s": wall, "texts_per_s": round(args.n / wall, 1),
                "median_encode_s": enc, "encode_only_texts_per_s": round(args.n / enc * args.workers, 1)}

    res = {"ray": summary("ray"), "local": summary("local")}
    res["ratio_ray_over_local"] = {
        "texts_per_s": round(res["ray"]["texts_per_s"] / res["local"]["texts_per_s"], 3),
        "encode_only_texts_per_s": round(res["ray"]["encode_only_texts_per_s"]
                                         / res["local"]["encode_only_texts_per_s"], 3)}
    res["min_cosine_ray_vs_local"] = round(cosine_min, 6)
    res["runs"] = runs
    settings = {"model": args.model, "n": args.n, "workers": args.workers, "shard_size": args.shard_size,
                "batch_size": args.batch_size, "repeats": args.repeats, "precision": "fp32",
                "ray_object_store_mb": 200, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(["ray", "lancedb"]),
           "settings": settings, "results": res}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
