"""The full evaluation suite (``contrastkit eval all``) on published models, with wall times.

Runs the CLI (the path users run) once per model: STS (the seven SimCSE-protocol tasks plus
MTEB's STS-B test on original text), SentEval transfer, clustering, paraphrase retrieval and
geometry. Records each suite's seconds (encoding included; each distinct sentence is encoded
once per model), the STS-B (MTEB) check against the published figure, and copies the tables.

    python benchmarks/eval_suite.py [--models all-MiniLM-L6-v2 all-mpnet-base-v2] [--threads 2]

all-mpnet-base-v2 needs ``bash scripts/install_benchmark_assets.sh`` first.
Writes ``benchmarks/results/eval_suite.json`` and each model's report under ``runs/eval-suite/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

PUBLISHED_MTEB_STSB = {"all-MiniLM-L6-v2": 82.03, "all-mpnet-base-v2": 83.42}
STS_TASKS = "sts=STS12,STS13,STS14,STS15,STS16,STSBenchmark,SICKRelatedness,STSBenchmark-original"


def run_model(model: str, out_dir: Path, threads: int, precision: str) -> dict:
    """One ``contrastkit eval all`` run; returns the summary of its report."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "contrastkit.cli", "eval", "all", "--model", model, "--tasks", STS_TASKS,
           "--output", str(out_dir), "--precision", precision, "--no-progress"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    report = json.loads((out_dir / "report.json").read_text())
    entry = report["models"][0]
    suites = entry["suites"]
    secs = entry["suite_seconds"]
    sts = suites["sts"]["tasks"]
    summary = {
        "command": "contrastkit eval all --model " + model + f" --tasks {STS_TASKS} --precision {precision}",
        "wall_s": round(wall, 1), "suite_seconds": secs,
        "sts_plus_transfer_s": round(secs.get("sts", 0) + secs.get("transfer", 0), 1),
        "sts_spearman": {k: v["spearman"] for k, v in sts.items()},
        "sts_avg_simcse7": suites["sts"].get("avg"),
        "stsb_mteb": sts["STSBenchmark-original"]["spearman"],
        "stsb_mteb_published": PUBLISHED_MTEB_STSB.get(model),
        "transfer": {k: v for k, v in suites["transfer"].get("tasks", {}).items()},
        "transfer_avg": suites["transfer"].get("average"),
        "clustering": suites["clustering"].get("tasks"),
        "retrieval": suites["retrieval"].get("tasks"),
        "geometry": {k: v for k, v in suites["geometry"].items() if k not in ("suite", "elapsed_s")},
        "embedding_cache": entry.get("embedding_cache"),
        "markdown": (out_dir / "report.md").read_text(),
    }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    ap.add_argument("--threads", type=int, default=2, help="torch / BLAS threads of the eval process")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    ap.add_argument("--out", default="benchmarks/results/eval_suite.json")
    args = ap.parse_args()
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results = previous.get("results", {})
    for model in args.models:
        res = run_model(model, Path("runs/eval-suite") / model, args.threads, args.precision)
        results[model] = {**res, "date": str(date.today())}
        print(res["markdown"])
        print(f"{model}: STS-B (MTEB) {res['stsb_mteb']:.2f} vs published {res['stsb_mteb_published']}; "
              f"STS+transfer {res['sts_plus_transfer_s']:.0f} s; all suites {res['wall_s']:.0f} s")
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "threads": args.threads, "versions": versions(), "results": results}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
