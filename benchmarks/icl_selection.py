"""In-context example selection: accuracy (chrF for KJV -> WEB) per selector x task x LM, k = 4 and 8, 3 seeds.

Selectors of :mod:`contrastkit.icl` (random, kNN/KATE, MMR, CEIL's DPP, Se^2-style sequential, label coverage)
choose demonstrations from each task's pool by the embeddings of a contrastkit Encoder (default
all-MiniLM-L6-v2); a local causal LM (SmolLM2-135M-Instruct, Gemma-3-270m: offline aliases) scores the label
words by log-likelihood (``--calibrate`` adds contextual-calibration rows) or rewrites KJV verses into WEB
(greedy, chrF). The test queries of a task are fixed (the first ``--limit`` of a seed-0 draw); each seed draws
its own ``--pool-size`` demonstration pool (and the random selector's draws), as in the ICL papers' seeds.

    python benchmarks/icl_selection.py                                              # the full table (slow on CPU)
    python benchmarks/icl_selection.py --limit 20 --models smollm2-135m --tasks SST2 --seeds 0 --tag smoke
    python benchmarks/icl_selection.py --dtype bf16 --threads 2 --resume   # a killed run goes on at its next row
    python benchmarks/icl_selection.py --print-only                          # the table of the result file

Writes ``benchmarks/results/icl_selection[-TAG].json`` (after every row; each row records its machine and
threads) and prints a Markdown table of mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.fsutil import atomic_write_bytes  # noqa: E402
from contrastkit.icl import (  # noqa: E402
    CLASSIFICATION_TASKS,
    ICL_TASKS,
    SELECTORS,
    ClassificationTask,
    RewriteTask,
    evaluate_classification,
    evaluate_rewriting,
    load_bible_rewrite_task,
    load_classification_task,
)
from contrastkit.lm import load_causal_lm  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MODELS = ("smollm2-135m", "gemma3-270m")
# Selector parameters used in every run (recorded in the result file).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "mmr": {"lam": 0.5, "n_candidates": 100},
    "dpp": {"trade_off": 0.1, "n_candidates": 100},
    "sequential": {"n_candidates": 8, "beam": 1},
    "label_coverage": {},
}


class EmbeddingCache:
    """Encode each distinct text once per run."""

    def __init__(self, encoder: Encoder, batch_size: int) -> None:
        self.encoder, self.batch_size, self.store = encoder, batch_size, {}  # type: dict[str, np.ndarray]

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.store]
        if missing:
            embs = self.encoder.encode(missing, batch_size=self.batch_size, precision="fp32")
            self.store.update(zip(missing, embs))
        return np.stack([self.store[t] for t in texts]) if texts else np.zeros((0, self.encoder.dim))


def subsample_pool(task: ClassificationTask | RewriteTask, n: int | None,
                   seed: int) -> ClassificationTask | RewriteTask:
    """The task with a seed-dependent pool of at most ``n`` demonstrations (the queries unchanged)."""
    if isinstance(task, ClassificationTask):
        return task.limit(n_pool=n, seed=1000 + seed)
    size = len(task.pool_sources)
    if n is None or n >= size:
        return task
    idx = np.sort(np.random.default_rng(1000 + seed).choice(size, n, replace=False))
    return RewriteTask(task.name, task.template, [task.pool_sources[i] for i in idx],
                       [task.pool_targets[i] for i in idx], task.test_sources, task.test_targets,
                       [*task.notes, f"{n} of {size} pool items (seed {seed})"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="causal LM aliases or paths")
    ap.add_argument("--tasks", nargs="+", default=list(ICL_TASKS), choices=list(ICL_TASKS))
    ap.add_argument("--selectors", nargs="+", default=list(SELECTORS), choices=list(SELECTORS))
    ap.add_argument("--ks", nargs="+", type=int, default=[4, 8], help="numbers of demonstrations")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--limit", type=int, default=200, help="test queries per task (fixed across seeds)")
    ap.add_argument("--pool-size", type=int, default=2000, help="demonstration pool drawn per seed (0: all)")
    ap.add_argument("--calibrate", action="store_true", help="also run every row with contextual calibration")
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2", help="the Encoder whose embeddings select")
    ap.add_argument("--params", default="{}", help="JSON: selector -> parameters overriding the defaults")
    ap.add_argument("--batch-size", type=int, default=8, help="prompts per LM forward pass")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--data-dir", default=None, help="SentEval data root (default: the usual places)")
    ap.add_argument("--tag", default="", help="suffix of the result file")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="the LMs' weights and activations")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows of the result file (same settings) and run only the missing ones")
    ap.add_argument("--print-only", action="store_true", help="print the table of the result file and exit")
    args = ap.parse_args(argv)
    dest = RESULTS / f"icl_selection{'-' + args.tag if args.tag else ''}.json"
    if args.print_only:
        print_table(json.loads(dest.read_text())["results"])
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    params = {**DEFAULT_PARAMS, **{k: {**DEFAULT_PARAMS.get(k, {}), **v} for k, v in json.loads(args.params).items()}}
    pool_size = args.pool_size or None
    t_all = time.perf_counter()
    encoder = Encoder.from_pretrained(args.encoder)
    embed = EmbeddingCache(encoder, 64)
    tasks: dict[str, ClassificationTask | RewriteTask] = {}
    for name in args.tasks:
        if name in CLASSIFICATION_TASKS:
            tasks[name] = load_classification_task(name, args.data_dir).limit(n_test=args.limit, seed=0)
        else:
            tasks[name] = load_bible_rewrite_task(n_pool=None, n_test=args.limit, seed=0)
    out: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "protocol": ("label-word log-likelihood (chrF for KJV-WEB, greedy to end of line); demonstrations most "
                     "important nearest the query; queries fixed, pool drawn per seed"),
        "encoder": args.encoder, "limit": args.limit, "pool_size": pool_size, "dtype": args.dtype,
        "selector_params": params,
        "tasks": {n: {"notes": t.notes, "n_queries": len(t.test_texts if isinstance(t, ClassificationTask)
                                                         else t.test_sources)} for n, t in tasks.items()},
        "machine": cpu_model(), "threads": torch.get_num_threads(), "versions": versions(["sacrebleu"]),
        "results": []}
    RESULTS.mkdir(parents=True, exist_ok=True)
    done: set[tuple[Any, ...]] = set()
    if args.resume and dest.is_file():
        previous = json.loads(dest.read_text())
        same = ("encoder", "limit", "pool_size", "selector_params")
        changed = [k for k in same if previous.get(k) != out[k]] + \
            (["dtype"] if previous.get("dtype", "fp32") != args.dtype else [])
        if changed:
            ap.error(f"--resume: {dest} was written with other settings ({', '.join(changed)})")
        out["results"], out["tasks"] = previous["results"], {**previous["tasks"], **out["tasks"]}
        done = {_key(r) for r in out["results"]}
    results: list[dict[str, Any]] = out["results"]
    for model_name in args.models:
        model, tok = load_causal_lm(model_name, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
        for tname, base in tasks.items():
            for seed in args.seeds:
                task = subsample_pool(base, pool_size, seed)
                if isinstance(task, ClassificationTask):
                    pool_e, test_e = embed(task.pool_texts), embed(task.test_texts)
                else:
                    pool_e, test_e = embed(task.pool_sources), embed(task.test_sources)
                score_cache: dict[Any, float] = {}  # sequential: k = 4 is k = 8's first four steps
                for k in args.ks:
                    for sel in args.selectors:
                        for cal in ((False, True) if args.calibrate and isinstance(task, ClassificationTask)
                                    else (False,)):
                            if (model_name, tname, k, sel, seed, cal) in done:
                                continue
                            if isinstance(task, ClassificationTask):
                                res = evaluate_classification(model, tok, task, pool_e, test_e, selector=sel, k=k,
                                                              seed=seed, calibrate=cal,
                                                              selector_params=params.get(sel),
                                                              batch_size=args.batch_size, score_cache=score_cache)
                            else:
                                res = evaluate_rewriting(model, tok, task, pool_e, test_e, selector=sel, k=k,
                                                         seed=seed, selector_params=params.get(sel),
                                                         batch_size=args.batch_size, score_cache=score_cache)
                            row = {"model": model_name, **res.to_dict(), "machine": cpu_model(),
                                   "threads": torch.get_num_threads()}
                            results.append(row)
                            print(f"{model_name:14s} {tname:8s} k={k} {sel:15s}{' cal' if cal else '    '} "
                                  f"seed {seed}: {res.metric} {res.score:6.2f} ({res.seconds:.0f} s)", flush=True)
                            out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
                            atomic_write_bytes(dest, json.dumps(out, indent=2).encode())
        del model
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    atomic_write_bytes(dest, json.dumps(out, indent=2).encode())
    print_table(results)
    print(f"\nwrote {dest} ({out['wall_seconds']} s)")
    return 0


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row["model"], row["task"], row["k"], row["selector"], row["seed"], row["calibrate"]


def print_table(results: list[dict[str, Any]]) -> None:
    """Markdown: one row per (model, task, k, selector, calibrated), mean +- std over seeds."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in results:
        groups.setdefault((r["model"], r["task"], r["k"], r["selector"], r["calibrate"], r["metric"]),
                          []).append(r["score"])
    print("\n| model | task | k | selector | calibrated | metric | mean ± std | seeds |\n"
          "|---|---|---|---|---|---|---|---|")
    for (m, t, k, s, c, metric), v in groups.items():
        print(f"| {m} | {t} | {k} | {s} | {'yes' if c else 'no'} | {metric} | {np.mean(v):.2f} ± {np.std(v):.2f} "
              f"| {len(v)} |")


if __name__ == "__main__":
    raise SystemExit(main())
