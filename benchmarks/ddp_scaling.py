"""Training throughput with 1 vs 2 processes on one machine: `contrastkit train` alone and under `torchrun`.

The same run in every layout: unsupervised SimCSE on all-MiniLM-L6-v2 (mean pooling, two dropout views,
InfoNCE at tau 0.05), global batch 64, max length 32, lr 3e-5, precision auto, ``--steps`` optimizer
steps over the SentEval transfer sentences (as ``benchmarks/train_throughput.py``). Layouts:

- ``1 proc x 1 thread`` and ``1 proc x 2 threads``: plain ``contrastkit train``;
- ``2 proc x 1 thread, cross_device``: ``torchrun --nproc_per_node 2``, each rank 32 rows of every
  global batch, every rank's embeddings gathered (``negatives.source: cross_device``), so each anchor
  still sees all 127 other texts as candidates: the same objective as one process;
- ``2 proc x 1 thread, in_batch``: the same, each rank scoring only its own 32 rows (64 candidates per
  anchor instead of 128: cheaper, a different objective).

Throughput is read from each run's ``metrics.jsonl`` (written by rank 0): sentences per second of the
optimizer steps after the first ``--warmup`` (process start, model load and the first steps excluded).
Each layout runs ``--repeats`` times, interleaved, and the median is reported; run it on an idle machine.

    python benchmarks/ddp_scaling.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from train_throughput import BATCH, LR, MAX_LEN, TAU, corpus  # noqa: E402

LAYOUTS: dict[str, tuple[int, int, str]] = {  # name -> (processes, threads per process, negatives source)
    "1 proc x 1 thread": (1, 1, "in_batch"),
    "1 proc x 2 threads": (1, 2, "in_batch"),
    "2 proc x 1 thread, cross_device": (2, 1, "cross_device"),
    "2 proc x 1 thread, in_batch": (2, 1, "in_batch"),
}


def config(data: Path, out: Path, steps: int, threads: int, negatives: str, model: str) -> dict:
    """The run's config, identical across layouts but for threads and the negative source."""
    return {
        "data": {"source": str(data), "kind": "single"},
        "model": {"backbone": model, "pooling": "mean", "max_length": MAX_LEN, "dropout": 0.1},
        "loss": {"name": "infonce", "temperature": TAU},
        "negatives": {"source": negatives},
        "train": {"output_dir": str(out), "batch_size": BATCH, "lr": LR, "max_steps": steps, "seed": 42,
                  "num_threads": threads, "log_every": 5, "checkpoint_every": 10 * steps,
                  "checkpoint_minutes": None, "progress": False, "precision": "auto"},
    }


def sentences_per_s(metrics: Path, warmup: int) -> float:
    """Sentences/s over the logged steps after ``warmup``, from the run's elapsed-time column."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "elapsed_s" in r]
    first = next(r for r in rows if r["step"] >= warmup)
    last = rows[-1]
    if last["step"] <= first["step"]:
        raise SystemExit(f"{metrics}: too few logged steps after warm-up {warmup}; raise --steps")
    return (last["step"] - first["step"]) * BATCH / (last["elapsed_s"] - first["elapsed_s"])


def run_layout(name: str, data: Path, work: Path, args: argparse.Namespace, rep: int) -> float:
    """Train once in layout ``name``; its sentences/s."""
    procs, threads, negatives = LAYOUTS[name]
    out = work / f"{name.replace(' ', '_').replace(',', '')}-{rep}"
    cfg = work / f"{out.name}.yaml"
    cfg.write_text(yaml.safe_dump(config(data, out, args.steps, threads, negatives, args.model)))
    if procs == 1:
        cmd = [sys.executable, "-m", "contrastkit", "train", str(cfg)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "contrastkit", "train", str(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{name} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return sentences_per_s(out / "metrics.jsonl", args.warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the timing")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--out", default="benchmarks/results/ddp_scaling.json")
    args = ap.parse_args()

    runs: dict[str, list[float]] = {name: [] for name in args.layouts}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "sentences.txt"
        data.write_text("\n".join(corpus(args.steps * BATCH + BATCH)) + "\n", encoding="utf-8")
        for rep in range(args.repeats):  # interleaved, so load drift hits every layout alike
            for name in args.layouts:
                runs[name].append(round(run_layout(name, data, work, args, rep), 1))
                print(f"{name}: {runs[name][-1]} sentences/s", flush=True)

    base = statistics.median(runs[args.layouts[0]])
    results = {name: {"sentences_per_s_runs": r, "median_sentences_per_s": statistics.median(r),
                      "ratio_to_first": round(statistics.median(r) / base, 3)} for name, r in runs.items()}
    for name, r in results.items():
        print(f"| {name} | {r['median_sentences_per_s']:.1f} | {r['ratio_to_first']:.2f}x |")
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "versions": versions(),
           "setup": {"model": args.model, "global_batch": BATCH, "max_length": MAX_LEN, "steps": args.steps,
                     "warmup_steps": args.warmup, "repeats": args.repeats},
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
