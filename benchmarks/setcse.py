"""SetCSE set-operation retrieval before/after inter-set contrastive fine-tuning, on local labelled sets.

For each dataset pair A x B (default TREC x MR, TREC x SUBJ, MR x SUBJ; SentEval files), a pool of
two-semantic sentences (one sentence of A joined with one of B) is built, with ``--n-examples``
example sentences per class held out as the sets (``contrastkit.sets.build_set_task``; the paper's
number of example sentences). For every class pair (a, b), the SetCSE operation series ``X ∩ S_a ∩ S_b``
and ``X ∩ S_a \\ S_b`` (Liu, ICLR 2024, arXiv 2404.17606) rank the pool X; the top R (R = true answers)
is selected and scored as SetCSE reports its operations: accuracy over the pool and F1 of the selection
(x 100), averaged over class pairs and ``--seeds``. "after" fine-tunes a fresh copy of the model with
the inter-set loss on the example sets only (A's classes against each other, B's against each other).

    python benchmarks/setcse.py [--model all-MiniLM-L6-v2] [--steps 100] [--pool-per-pair 30] [--seeds 0 1 2]

Writes ``benchmarks/results/setcse.json`` (``--out``) with the machine and package versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from _tasks import md_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--pairs", nargs="+", default=["TREC:MR", "TREC:SUBJ", "MR:SUBJ"])
    ap.add_argument("--n-examples", type=int, default=20, help="example sentences per class (the sets)")
    ap.add_argument("--pool-per-pair", type=int, default=30, help="pool sentences per (class of A, class of B)")
    ap.add_argument("--steps", type=int, default=100, help="inter-set fine-tuning steps")
    ap.add_argument("--per-set", type=int, default=8, help="sentences per set per step")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/setcse.json")
    args = ap.parse_args()

    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.sets import build_set_task, evaluate_set_task, fine_tune_inter_set, labelled_sentences

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data: dict[str, Any] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    for pair in args.pairs:
        a, b = pair.split(":")
        for name in (a, b):
            if name not in data:
                data[name] = labelled_sentences(name)
        results[pair] = []
        for seed in args.seeds:
            task = build_set_task(pair, *data[a], *data[b], n_examples=args.n_examples,
                                  pool_per_pair=args.pool_per_pair, seed=seed)
            enc = Encoder.from_pretrained(args.model)
            t = time.perf_counter()
            before = evaluate_set_task(lambda x, enc=enc: enc.encode(x, precision="fp32"), task)
            sets, groups = task.example_sets()
            hist = fine_tune_inter_set(enc, sets, steps=args.steps, per_set=args.per_set, lr=args.lr,
                                       temperature=args.temperature, groups=groups, seed=seed)
            after = evaluate_set_task(lambda x, enc=enc: enc.encode(x, precision="fp32"), task)
            results[pair].append({"seed": seed, "n_pool": len(task.pool), "before": before, "after": after,
                                  "loss": [hist[0]["loss"], hist[-1]["loss"]],
                                  "seconds": round(time.perf_counter() - t, 1)})
            keys = ("intersection_acc", "intersection_f1", "difference_acc", "difference_f1")
            print(pair, seed, {k: round(before[k], 2) for k in keys}, "->",
                  {k: round(after[k], 2) for k in keys}, flush=True)

    def ms(pair: str, when: str, op: str) -> str:
        v = [r[when][op] for r in results[pair]]
        return f"{np.mean(v):.2f} ± {np.std(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"

    cols = [(op, m) for op in ("intersection", "difference") for m in ("acc", "f1")]
    rows = [[pair, results[pair][0]["n_pool"],
             *[ms(pair, when, f"{op}_{m}") for op, m in cols for when in ("before", "after")]] for pair in results]
    sym = {"intersection": "∩∩", "difference": "∩\\"}
    heads = [f"{sym[op]} {m} {when}" for op, m in cols for when in ("before", "after")]
    table = md_table(["sets A x B", "pool", *heads], rows)
    print(table)
    out = {"benchmark": "setcse", "date": str(date.today()), "machine": cpu_model(), "versions": versions(),
           "args": vars(args), "metric": "top-R selection: accuracy over the pool and F1 x 100, mean over class pairs",
           "results": results, "table": table, "wall_s": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
