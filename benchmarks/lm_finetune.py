"""Contrastive fine-tuning of a small LM through a prompt readout, on a CPU time budget; 7-task STS after.

Each run is ``contrastkit train <recipe>`` in a child process (its own peak memory), stopped by
``train.max_minutes``; then the best STS-B dev checkpoint (``model/``) and the last checkpoint's weights are
each scored on the 7 SimCSE STS tasks (bf16, the protocol of ``benchmarks/lm_readouts.py``). Training data: SNLI triplets from the local SentEval files
(``contrastkit.data.nli``: dev + test splits, every STS evaluation sentence removed), written to
``runs/data/snli-triplets.csv``.

    python benchmarks/lm_finetune.py                                   # the recipe, 60 min, seeds 42 43 44
    python benchmarks/lm_finetune.py --seeds 42 --minutes 10 --tag quick
    python benchmarks/lm_finetune.py --methods full lora freeze bias --minutes 15 --tag compute   # compute-matched
    python benchmarks/lm_finetune.py --describe      # trainable parameters per method, untrained STS-B dev
    python benchmarks/lm_finetune.py --tag compute --from-tags default compute --budgets 10 20 30 45 60   # dev score of every run at each budget

Methods (each a set of ``--set`` overrides of the recipe): ``full`` (as the recipe says), ``lora`` (rank 16
on every linear layer, lr x10), ``freeze`` (embeddings + the bottom ``--freeze-layers`` blocks frozen),
``bias`` (BitFit: norms and biases only, lr x100). Writes ``benchmarks/results/lm_finetune[-TAG].json``
(per run: the dev learning curve, step time, peak RSS, wall time, 7-task scores) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECIPE = REPO / "recipes" / "smollm2-prompteol-nli.yaml"
DATA = REPO / "runs" / "data" / "snli-triplets.csv"


def method_overrides(method: str, lr: float, freeze_layers: int) -> list[str]:
    """``--set`` overrides turning the recipe into one fine-tuning method."""
    if method == "full":
        return []
    if method == "lora":
        return ["model.lora={r: 16, alpha: 32, dropout: 0.0}", f"train.lr={lr * 10:g}"]
    if method == "freeze":
        return [f"model.freeze_layers={freeze_layers}"]
    if method == "bias":
        return ["model.bias_only=true", f"train.lr={lr * 100:g}"]
    raise SystemExit(f"unknown method {method!r} (full, lora, freeze, bias)")


def build_data(path: Path) -> dict[str, int]:
    """Write the SNLI triplets (STS evaluation sentences removed) once; returns their provenance counts."""
    from contrastkit.data.nli import snli_triplets, write_triplets

    triplets, stats = snli_triplets()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_triplets(path, triplets)
    return stats


def run_training(recipe: Path, run_dir: Path, sets: list[str], threads: int) -> dict[str, object]:
    """One ``contrastkit train`` child: its wall time, peak RSS (MiB) and exit status."""
    cmd = [sys.executable, "-m", "contrastkit", "train", str(recipe), "--set", f"train.output_dir={run_dir}",
           "--set", f"train.num_threads={threads}", *[a for s in sets for a in ("--set", s)]]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    if status:
        raise SystemExit(f"training failed (status {status}): {' '.join(cmd)}")
    return {"command": " ".join(cmd[1:]), "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def curves(run_dir: Path) -> dict[str, object]:
    """The dev learning curve and the median step time (steps between two logs, evaluation excluded)."""
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    logs = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval" in r]
    eval_steps = {r["step"] for r in evals}
    per_step = [(b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]) for a, b in itertools.pairwise(logs)
                if not any(a["step"] < s <= b["step"] for s in eval_steps)]
    state = json.loads((run_dir / "train_state.json").read_text())
    elapsed = {r["step"]: r["elapsed_s"] for r in logs}  # eval rows carry no time: the step's log row does
    return {"dev_curve": [[r["step"], round(elapsed[r["step"]], 1) if r["step"] in elapsed else None,
                           round(r["primary"], 2)] for r in evals],
            "loss_curve": [[r["step"], round(r["loss"], 4)] for r in logs],
            "s_per_step": round(statistics.median(per_step), 2) if per_step else None,
            "steps": state.get("step"), "best_step": state.get("best_step"),
            "best_dev": round(state["best_score"], 2) if state.get("best_score") is not None else None}


def sts7(run_dir: Path, threads: int, *, final: bool = False) -> dict[str, object]:
    """The 7 SimCSE STS tasks (bf16, batch 64) of a run's saved model (the best dev checkpoint), or with
    ``final`` of its last checkpoint's weights (no selection), plus that model's STS-B dev score."""
    import torch
    from safetensors.torch import load_file

    from contrastkit.config import load_config
    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.sts import SIMCSE_TASKS, evaluate_sts
    from contrastkit.run import build_encoder
    from contrastkit.training.checkpoint import latest_checkpoint

    torch.set_num_threads(threads)
    info: dict[str, object] = {}
    if final:  # the encoder as the run built it (a LoRA checkpoint holds the adapter-wrapped weights)
        enc = build_encoder(load_config(run_dir / "config.yaml").model)
        enc.max_length = json.loads((run_dir / "model" / "contrastkit.json").read_text())["max_length"]  # as saved
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        enc.load_state_dict(load_file(str(ckpt / "model.safetensors")))
        info["checkpoint"] = ckpt.name
    else:
        enc = Encoder.from_pretrained(str(run_dir / "model"))
    enc.eval()
    t0 = time.perf_counter()

    def encode(texts: list[str]) -> object:
        return enc.encode(texts, batch_size=64, precision="bf16")

    res = evaluate_sts(encode, [load_sts_task(t) for t in SIMCSE_TASKS])
    dev = evaluate_sts(encode, [load_sts_task("STSBenchmark-dev")])
    return {**info, "scores": {k: round(v, 2) for k, v in res.scores.items()}, "avg": round(res.avg, 2),
            "stsb_dev": round(dev.avg, 2), "eval_s": round(time.perf_counter() - t0, 1)}


def result_file(tag: str) -> Path:
    """The JSON a tag's runs are written to (no tag, or 'default': lm_finetune.json)."""
    return RESULTS / f"lm_finetune{'-' + tag if tag and tag != 'default' else ''}.json"


def budget_table(runs: dict[str, dict[str, object]], budgets: list[float]) -> str:
    """STS-B dev of each run at each budget (minutes): its last dev evaluation done within the budget.

    The learning-rate schedule is a function of the step (warmup, then linear decay over the recipe's epochs),
    not of ``max_minutes``, so a long run's weights at minute T are those a T-minute run of the same seed ends
    with: one long run per method, evaluated along the way, gives every budget's point. Wall time counts the
    dev evaluations too, as the budget of a real run would. The final evaluation (after the time limit) counts at
    the run's ``minutes``. A run whose dev curve is marked stale (``dev_curve_stale``) prints "stale"."""
    head = "| run | " + " | ".join(f"{b:g} min" for b in budgets) + " |"
    lines = [head, "|---|" + "---:|" * len(budgets)]
    for key, r in runs.items():
        if r.get("dev_curve_stale"):
            lines.append(f"| {key} | " + " | ".join("stale" for _ in budgets) + " |")
            continue
        limit = float(str(key).rsplit("/", 1)[-1].removesuffix("min"))
        points = [((t if t is not None else limit * 60) / 60, score) for _, t, score in r["dev_curve"]]  # type: ignore[union-attr]
        cells = []
        for b in budgets:
            done = [score for minutes, score in points if minutes <= b + 1e-6]
            cells.append(f"{done[-1]:.2f}" if done and b <= limit else "–")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe(recipe: Path, lr: float, freeze_layers: int, threads: int) -> dict[str, object]:
    """Trainable parameters of each method, and the untrained model's STS-B dev score (bf16), for the tables."""
    import torch

    from contrastkit.config import load_config
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.sts import evaluate_sts
    from contrastkit.run import build_encoder

    torch.set_num_threads(threads)
    out: dict[str, object] = {}
    for method in ("full", "lora", "freeze", "bias"):
        enc = build_encoder(load_config(recipe, method_overrides(method, lr, freeze_layers)).model)
        out[method] = {"trainable": sum(p.numel() for p in enc.parameters() if p.requires_grad),
                       "total": sum(p.numel() for p in enc.parameters())}
        if method == "full":
            enc.eval()
            dev = evaluate_sts(lambda t, e=enc: e.encode(t, batch_size=64, precision="bf16"),
                               [load_sts_task("STSBenchmark-dev")])
            out["untrained_stsb_dev"] = round(dev.avg, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--methods", nargs="+", default=["full"], help="full, lora, freeze, bias")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--minutes", type=float, default=60.0, help="training budget per run (train.max_minutes)")
    ap.add_argument("--freeze-layers", type=int, default=20, help="method 'freeze': blocks frozen (SmolLM2 has 30)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra recipe overrides (KEY=VALUE)")
    ap.add_argument("--skip-sts7", action="store_true", help="dev curve only (no 7-task evaluation)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--budgets", type=float, nargs="+", metavar="MIN",
                    help="only print the STS-B dev score of every run in the result file at these budgets (minutes)")
    ap.add_argument("--from-tags", nargs="+", metavar="TAG",
                    help="with --budgets: the result files to read, by tag ('default': lm_finetune.json); "
                         "default: --tag's")
    ap.add_argument("--eval-only", action="store_true",
                    help="do not train: evaluate the runs already in runs/lm_finetune/TAG (after a failed evaluation)")
    ap.add_argument("--describe", action="store_true",
                    help="only print each method's trainable parameters and the untrained STS-B dev score")
    args = ap.parse_args(argv)

    from contrastkit.config import load_config

    cfg = load_config(args.recipe)
    if args.describe:
        print(json.dumps(describe(args.recipe, cfg.train.lr, args.freeze_layers, args.threads), indent=2))
        return 0
    dest = result_file(args.tag)
    if args.budgets:
        runs = {}
        for tag in args.from_tags or [args.tag]:
            runs.update(json.loads(result_file(tag).read_text())["runs"])
        print(budget_table(runs, args.budgets))
        return 0
    out: dict[str, object] = json.loads(dest.read_text()) if dest.exists() else {}
    out.update({"command": " ".join(["lm_finetune.py", *(argv if argv is not None else sys.argv[1:])]),
                "recipe": str(args.recipe.relative_to(REPO)) if args.recipe.is_relative_to(REPO) else str(args.recipe),
                "minutes": args.minutes, "threads": args.threads, "machine": cpu_model(), "versions": versions(),
                "date": time.strftime("%Y-%m-%d")})
    out["data"] = build_data(DATA)
    runs: dict[str, dict[str, object]] = out.setdefault("runs", {})  # type: ignore[assignment]
    for method in args.methods:
        for seed in args.seeds:
            key = f"{method}/seed{seed}/{args.minutes:g}min"
            if key in runs:
                print(f"{key}: already measured (delete it from {dest} to rerun)")
                continue
            run_dir = REPO / "runs" / "lm_finetune" / (args.tag or "default") / key.replace("/", "-")
            sets = [f"data.source={DATA}", f"train.seed={seed}", f"train.max_minutes={args.minutes:g}",
                    *method_overrides(method, cfg.train.lr, args.freeze_layers), *args.sets]
            if args.eval_only:  # a finished run whose evaluation failed: no wall time or peak RSS to report
                if not (run_dir / "train_state.json").is_file():
                    raise SystemExit(f"--eval-only: {run_dir} holds no finished run")
                trained: dict[str, object] = {"wall_s": None, "peak_rss_mib": None, "evaluated_later": True}
            else:
                trained = run_training(args.recipe, run_dir, sets, args.threads)
            row = {"method": method, "seed": seed, **trained, **curves(run_dir)}
            if not args.skip_sts7:
                row["sts7"] = sts7(run_dir, args.threads)
                row["sts7_final"] = sts7(run_dir, args.threads, final=True)
            runs[key] = row
            # Another invocation (other seeds, run side by side) may have written rows since this one started.
            saved = json.loads(dest.read_text()) if dest.exists() else {}
            runs.update({k: v for k, v in saved.get("runs", {}).items() if k not in runs})
            dest.write_text(json.dumps(out, indent=2))
            print(f"{key}: {row.get('steps')} steps, best dev {row.get('best_dev')}, "
                  f"7-task {row.get('sts7', {}).get('avg')} (final weights {row.get('sts7_final', {}).get('avg')})",
                  flush=True)
    print("\n| run | steps | s/step | peak RSS MiB | best dev (step) | 7-task avg: best dev ckpt | final weights |"
          "\n|---|---:|---:|---:|---:|---:|---:|")
    for key, r in runs.items():
        print(f"| {key} | {r['steps']} | {r['s_per_step']} | {r['peak_rss_mib']} | {r['best_dev']} ({r['best_step']}) | "
              f"{r.get('sts7', {}).get('avg', '-')} | {r.get('sts7_final', {}).get('avg', '-')} |")
    print(f"\nwrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
