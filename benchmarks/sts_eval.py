"""STS evaluation of published models with ``contrastkit eval sts``, checked against MTEB figures.

Runs the CLI (the same code path users run) on each model: the seven SimCSE-protocol tasks
(STS12-16 "all", STS-B test, SICK-R test) and MTEB's STS-B test on original text, then
compares STS-B (MTEB) with the published figure and records the wall time.

    python benchmarks/sts_eval.py [--models all-MiniLM-L6-v2] [--out benchmarks/results/sts_eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

PUBLISHED_MTEB_STSB = {"all-MiniLM-L6-v2": 82.03, "all-mpnet-base-v2": 83.42}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2"])
    ap.add_argument("--out", default="benchmarks/results/sts_eval.json")
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    results = {}
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "contrastkit.cli", "eval", "sts", "--model", model,
                                   "--output", tmp, "--no-progress"], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            print(proc.stdout)
            res = json.loads((Path(tmp) / "sts.json").read_text())
        scores = {name: task["spearman"] for name, task in res["tasks"].items()}
        results[model] = {"spearman": scores, "avg_simcse7": res.get("avg"), "wall_s": round(wall, 1),
                          "eval_s": res.get("elapsed_s"), "distinct_sentences": res.get("n_sentences"),
                          "published_mteb_stsb": PUBLISHED_MTEB_STSB.get(model)}
        print(f"{model}: STS-B (MTEB) {scores['STSBenchmark-original']:.2f} vs published "
              f"{PUBLISHED_MTEB_STSB.get(model)}; wall {wall:.1f} s")
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": "contrastkit eval sts --model MODEL", "versions": versions(), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
