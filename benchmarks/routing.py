"""Cost-aware routing between local LMs: the accuracy-cost curve of the routers vs always-small, always-large,
random and the oracle on the same held-out queries.

Candidates are the local LMs (default SmolLM2-135M-Instruct and Gemma-3-270m) x prompt variants (zero-shot, and
4 kNN-selected demonstrations) on the classification harness of :mod:`contrastkit.icl` (SST2, TREC, SUBJ, MR,
queries pooled). Every candidate answers every query once; quality = correct (1/0), cost = that call's measured
latency (seconds, one query per forward pass). Queries are split in half per seed: the routers learn from the
first half and are scored on the second, where a routed query costs the latency its chosen candidate really had.

Routers: ``knn`` (:class:`contrastkit.route.KNNRouter` over the Encoder's embeddings), ``cscr``
(:class:`contrastkit.route.ContrastiveCostRouter`: logit footprints on probe queries from the pools, the
cost-banded InfoNCE, k-NN lookup), each swept over the cost penalty lambda. Baselines: every single candidate
(always-small = the cheapest, always-large = the most expensive), random mixes of small and large, uniform
random, and the oracle (the cheapest correct candidate).

    python benchmarks/routing.py                                        # 200 queries per task (slow on CPU)
    python benchmarks/routing.py --limit 10 --models smollm2-135m --tag smoke

Writes ``benchmarks/results/routing[-TAG].json`` and prints the curves (accuracy %, mean seconds per query).
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
from contrastkit.icl import (  # noqa: E402
    CLASSIFICATION_TASKS,
    build_prompt,
    continuation_logprobs,
    load_classification_task,
    select_knn,
)
from contrastkit.lm import load_causal_lm  # noqa: E402
from contrastkit.route import ContrastiveCostRouter, KNNRouter, logit_footprint, oracle_choice  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
MODELS = ("smollm2-135m", "gemma3-270m")
VARIANTS = {"zero-shot": 0, "knn-4": 4}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--tasks", nargs="+", default=list(CLASSIFICATION_TASKS), choices=list(CLASSIFICATION_TASKS))
    ap.add_argument("--limit", type=int, default=200, help="queries per task")
    ap.add_argument("--pool-size", type=int, default=2000, help="demonstration pool per task")
    ap.add_argument("--probes", type=int, default=8, help="probe queries per task for the logit footprints")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="train/test splits")
    ap.add_argument("--knn-k", type=int, default=10)
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--print-only", action="store_true", help="print the tables of the tag's result file, run nothing")
    args = ap.parse_args(argv)
    dest = RESULTS / f"routing{'-' + args.tag if args.tag else ''}.json"
    if args.print_only:
        print_curves(json.loads(dest.read_text()))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    encoder = Encoder.from_pretrained(args.encoder)
    tasks = {n: load_classification_task(n, args.data_dir).limit(n_test=args.limit, n_pool=args.pool_size, seed=0)
             for n in args.tasks}
    pool_e = {n: encoder.encode(t.pool_texts, precision="fp32") for n, t in tasks.items()}
    test_e = {n: encoder.encode(t.test_texts, precision="fp32") for n, t in tasks.items()}
    rng = np.random.default_rng(0)
    probes = {n: rng.choice(len(t.pool_texts), min(args.probes, len(t.pool_texts)), replace=False)
              for n, t in tasks.items()}
    candidates = [(m, v) for m in args.models for v in VARIANTS]
    rows = [(n, i) for n, t in tasks.items() for i in range(len(t.test_texts))]
    quality = np.zeros((len(rows), len(candidates)))
    latency = np.zeros((len(rows), len(candidates)))
    footprints = []
    for m in args.models:
        model, tok = load_causal_lm(m)
        for v, k in VARIANTS.items():
            c = candidates.index((m, v))
            fp = []
            for n, t in tasks.items():
                words = [" " + w for w in t.label_words]

                def prompt(text: str, emb: np.ndarray, exclude: int | None = None, t: Any = t, n: str = n,
                           k: int = k) -> str:
                    sel = [i for i in select_knn(emb, pool_e[n], k + 1) if i != exclude][:k] if k else []
                    demos = [(t.pool_texts[i], t.label_words[int(t.pool_labels[i])]) for i in reversed(sel)]
                    return build_prompt(t.template, demos, text)

                fp.append(continuation_logprobs(model, tok, [prompt(t.pool_texts[j], pool_e[n][j], exclude=int(j))
                                                             for j in probes[n]], words))
                for r, (rn, i) in enumerate(rows):
                    if rn != n:
                        continue
                    t0 = time.perf_counter()
                    s = continuation_logprobs(model, tok, [prompt(t.test_texts[i], test_e[n][i])], words)
                    latency[r, c] = time.perf_counter() - t0
                    quality[r, c] = float(int(s.argmax()) == int(t.test_labels[i]))
            footprints.append(logit_footprint(fp))
            print(f"{m:14s} {v:10s} accuracy {100 * quality[:, c].mean():6.2f}  "
                  f"mean latency {latency[:, c].mean() * 1000:7.1f} ms", flush=True)
        del model
    embs = np.vstack([test_e[n][i] for n, i in rows])
    out: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "protocol": ("quality = correct label (log-likelihood of label words), cost = measured latency of that "
                     "query's call (s); queries split in half per seed, routers fit on the first half"),
        "candidates": [f"{m}:{v}" for m, v in candidates], "tasks": list(tasks), "limit": args.limit,
        "n_queries": len(rows), "encoder": args.encoder, "machine": cpu_model(),
        "threads": torch.get_num_threads(), "versions": versions(),
        "candidate_accuracy": (100 * quality.mean(axis=0)).round(2).tolist(),
        "candidate_mean_latency_s": latency.mean(axis=0).round(5).tolist(), "seeds": {}}
    for seed in args.seeds:
        out["seeds"][str(seed)] = evaluate_split(embs, quality, latency, np.array(footprints), seed, args.knn_k)
    out["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print_curves(out)
    print(f"\nwrote {dest} ({out['wall_seconds']} s)")
    return 0


LAM_FACTORS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
"""The routers' cost penalties lambda, as multiples of 1 / (the training half's largest - smallest mean latency)."""


def point(choice: np.ndarray, quality: np.ndarray, latency: np.ndarray) -> dict[str, float]:
    """Accuracy (%) and mean realised latency (s) of one routing decision per query."""
    r = np.arange(len(choice))
    return {"accuracy": round(100 * float(quality[r, choice].mean()), 2),
            "cost": round(float(latency[r, choice].mean()), 5)}


def evaluate_split(embs: np.ndarray, quality: np.ndarray, latency: np.ndarray, footprints: np.ndarray, seed: int,
                   knn_k: int) -> dict[str, Any]:
    """Every router and baseline on one half/half split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(embs))
    tr, te = order[:len(order) // 2], order[len(order) // 2:]
    q_te, l_te = quality[te], latency[te]
    mean_cost = latency[tr].mean(axis=0)
    small, large = int(np.argmin(mean_cost)), int(np.argmax(mean_cost))
    scale = float(mean_cost.max() - mean_cost.min()) or 1.0
    lams = [f / scale for f in LAM_FACTORS]
    res: dict[str, Any] = {"n_train": len(tr), "n_test": len(te), "always_small": small, "always_large": large,
                           "single": [point(np.full(len(te), c), q_te, l_te) for c in range(quality.shape[1])]}
    res["random_mix_small_large"] = [
        {"p_large": p, **point(np.where(rng.random(len(te)) < p, large, small), q_te, l_te)}
        for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    res["random_uniform"] = point(rng.integers(0, quality.shape[1], len(te)), q_te, l_te)
    res["oracle"] = point(oracle_choice(q_te, l_te), q_te, l_te)
    knn = KNNRouter(embs[tr], quality[tr], latency[tr], k=knn_k)
    res["knn"] = [{"lam": lam, **point(knn.route(embs[te], lam=lam), q_te, l_te)} for lam in lams]
    cscr = ContrastiveCostRouter(embs.shape[1], footprints.shape[1], dim=64, hidden=128)
    rep = cscr.fit(embs[tr], quality[tr], latency[tr], footprints, epochs=100, seed=seed)
    res["cscr_fit"] = {"steps": rep.steps, "final_loss": round(rep.final_loss, 4), "skipped": rep.skipped_queries}
    res["cscr"] = [{"lam": lam, **point(cscr.route(embs[te], lam=lam), q_te, l_te)} for lam in lams]
    return res


def print_curves(out: dict[str, Any]) -> None:
    """The accuracy-cost points of each seed as a Markdown table."""
    cands = out["candidates"]
    print("\n| seed | router | setting | accuracy % | mean cost (s/query) |\n|---|---|---|---|---|")
    for seed, r in out["seeds"].items():
        for c, p in enumerate(r["single"]):
            tag = " (always-small)" if c == r["always_small"] else " (always-large)" if c == r["always_large"] else ""
            print(f"| {seed} | single | {cands[c]}{tag} | {p['accuracy']:.2f} | {p['cost']:.4f} |")
        for p in r["random_mix_small_large"]:
            print(f"| {seed} | random small/large | p_large={p['p_large']} | {p['accuracy']:.2f} | {p['cost']:.4f} |")
        ru = r["random_uniform"]
        print(f"| {seed} | random uniform | | {ru['accuracy']:.2f} | {ru['cost']:.4f} |")
        print(f"| {seed} | oracle | | {r['oracle']['accuracy']:.2f} | {r['oracle']['cost']:.4f} |")
        for name in ("knn", "cscr"):
            for p in r[name]:
                print(f"| {seed} | {name} | lam={p['lam']:.3g} | {p['accuracy']:.2f} | {p['cost']:.4f} |")
    print_mean(out)


def print_mean(out: dict[str, Any]) -> None:
    """Each point's accuracy and cost, mean ± std over the seeds (routers by lambda factor, :data:`LAM_FACTORS`)."""
    runs = list(out["seeds"].values())
    rows: list[tuple[str, str, list[dict[str, float]]]] = [
        ("always-small", out["candidates"][runs[0]["always_small"]], [r["single"][r["always_small"]] for r in runs]),
        ("always-large", out["candidates"][runs[0]["always_large"]], [r["single"][r["always_large"]] for r in runs])]
    rows += [("random small/large", f"p_large={p['p_large']}", [r["random_mix_small_large"][i] for r in runs])
             for i, p in enumerate(runs[0]["random_mix_small_large"])]
    rows += [("random uniform", "", [r["random_uniform"] for r in runs]), ("oracle", "", [r["oracle"] for r in runs])]
    for name in ("knn", "cscr"):
        rows += [(name, f"lambda x{f:g}", [r[name][i] for r in runs]) for i, f in enumerate(LAM_FACTORS)]
    print(f"\n| router | setting | accuracy % (mean ± std, {len(runs)} seeds) | mean cost (s/query) |\n|---|---|---:|---:|")
    for name, setting, points in rows:
        acc, cost = np.array([p["accuracy"] for p in points]), np.array([p["cost"] for p in points])
        print(f"| {name} | {setting} | {acc.mean():.2f} ± {acc.std():.2f} | {cost.mean():.4f} |")


if __name__ == "__main__":
    raise SystemExit(main())
