"""SimCTG before/after: token-representation isotropy and the generation table of the base LM, an MLE-only
fine-tune and a SimCTG fine-tune (the same recipe, data, steps and seed; only the contrastive term differs).

1. Trains ``recipes/simctg-smollm2.yaml`` twice (``simctg.weight`` 1 and 0) with ``--steps`` / ``--train-limit``
   (or reuses ``--simctg-dir`` / ``--mle-dir``, finished runs' ``model/``).
2. Isotropy as SimCTG's figure measures it: each held-out text's mean pairwise cosine self-similarity of its
   last-layer token representations (lower = more isotropic), averaged over ``--iso-texts`` held-out Bible
   passages (the held-out books are not in the training data).
3. The generation table (benchmarks/generation_quality.py: rep-n, diversity, MAUVE, coherence, generation
   perplexity, tokens/s) of greedy, nucleus and contrastive search for each model, on ``--limit`` prompts.

    python benchmarks/simctg.py --dtype bf16 --resume              # CPU-sized run (hours); a killed run goes on
    python benchmarks/simctg.py --dtype bf16 --resume --base-rows benchmarks/results/generation_quality.json
                                   # the base LM's rows taken from generation_quality.py's run (same settings)
    python benchmarks/simctg.py --steps 2 --train-limit 64 --limit 6 --iso-texts 8 --max-new-tokens 12 \\
        --seeds 0 --out benchmarks/results/simctg-smoke.json       # smoke

Writes ``benchmarks/results/simctg.json`` (``--out``; rewritten after every row) with the machine and versions.
``--resume`` keeps what that file holds (same settings) and continues a killed training run at its last
checkpoint; a finished training run's ``model/`` under ``--runs-dir`` is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from generation_quality import passages, run_model, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# Settings the generation rows depend on: --resume and --base-rows take rows only when these agree.
TABLE_SETTINGS = ("limit", "prompt_tokens", "max_new_tokens", "encoder", "mauve_buckets", "dtype", "seeds")


def train(weight: float, args: argparse.Namespace, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    from contrastkit.lm.simctg import load_simctg_config, train_simctg
    from contrastkit.training.checkpoint import latest_checkpoint

    sets = [f"simctg.weight={weight}", f"train.output_dir={out_dir}", f"train.max_steps={args.steps}",
            f"data.limit={args.train_limit}", f"model.name={args.model}"]
    if args.threads:
        sets.append(f"train.num_threads={args.threads}")
    resume = args.resume and latest_checkpoint(out_dir / "checkpoints") is not None
    result = train_simctg(load_simctg_config(ROOT / "recipes" / "simctg-smollm2.yaml", sets), resume=resume)
    return result.model_dir, {"steps": result.steps, "seconds": round(result.seconds, 1), "last": result.last}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--runs-dir", default="runs/simctg-bench")
    ap.add_argument("--simctg-dir", help="a finished SimCTG run's model/ (skip training)")
    ap.add_argument("--mle-dir", help="a finished MLE-only run's model/ (skip training)")
    ap.add_argument("--iso-texts", type=int, default=500)
    ap.add_argument("--limit", type=int, default=500, help="prompts of the generation table")
    ap.add_argument("--strategies", nargs="+", default=["greedy", "nucleus", "contrastive_search"])
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--mauve-buckets", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="generation table: LM weights")
    ap.add_argument("--resume", action="store_true",
                    help="keep what --out holds (same settings); reuse or continue the training runs")
    ap.add_argument("--base-rows", help="a generation_quality.py result file: take the base LM's rows from it")
    ap.add_argument("--out", default="benchmarks/results/simctg.json")
    args = ap.parse_args()

    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.fsutil import atomic_write_bytes
    from contrastkit.generation.metrics import token_self_similarity
    from contrastkit.lm import load_causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"benchmark": "simctg", "date": str(date.today()), "machine": cpu_model(),
                           "threads": torch.get_num_threads(), "versions": versions(["mauve-text"]),
                           "args": vars(args), "training": {}, "isotropy": {}, "rows": []}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    same = ("model", "steps", "train_limit", "iso_texts", *TABLE_SETTINGS)
    if args.resume and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        changed = [k for k in same if previous["args"].get(k) != out["args"][k]]
        if changed:
            ap.error(f"--resume: {args.out} was written with other settings ({', '.join(changed)})")
        out |= {k: previous[k] for k in ("training", "isotropy", "rows")}
    done = {(r["model"], r["strategy"], r.get("seed")): r for r in out["rows"]}
    if args.base_rows and not any(m == "base" for m, _, _ in done):
        given = json.loads(Path(args.base_rows).read_text())
        changed = [k for k in TABLE_SETTINGS if given["args"].get(k) != out["args"][k]] + \
            (["source"] if given["args"].get("source") != "bible" else [])
        if changed:
            ap.error(f"--base-rows: {args.base_rows} was written with other settings ({', '.join(changed)})")
        rows = [dict(r, model="base", from_file=args.base_rows) for r in given["rows"] if r["model"] == args.model
                and r["strategy"] in ("human", *args.strategies)]
        out["rows"] += rows
        done |= {("base", r["strategy"], r.get("seed")): r for r in rows}

    def save() -> None:
        out["wall_s"] = round(time.perf_counter() - t0, 1)
        atomic_write_bytes(Path(args.out), json.dumps(out, indent=2).encode())

    runs = Path(args.runs_dir)
    models = {"base": args.model}
    for label, weight, given in (("mle", 0.0, args.mle_dir), ("simctg", 1.0, args.simctg_dir)):
        if given:
            models[label] = given
            continue
        if args.resume and label in out["training"] and (runs / label / "model").is_dir():
            models[label] = str(runs / label / "model")
            continue
        model_dir, info = train(weight, args, runs / label)
        models[label] = str(model_dir)
        out["training"][label] = info
        # rows and isotropy measured on an earlier run of this training (a machine without it) no longer apply
        out["isotropy"].pop(label, None)
        out["rows"] = [r for r in out["rows"] if r["model"] != label]
        done = {key: r for key, r in done.items() if key[0] != label}
        print(label, json.dumps(info), flush=True)
        save()

    held = passages("bible", min_words=int((args.prompt_tokens + args.max_new_tokens) * 1.2))
    for label, path in models.items():
        if label in out["isotropy"]:
            continue
        model, tok = load_causal_lm(path)
        with torch.inference_mode():
            out["isotropy"][label] = token_self_similarity(model, tok, held[:args.iso_texts], max_length=128)
        print("isotropy", label, json.dumps(out["isotropy"][label]), flush=True)
        save()

    encoder = Encoder.from_pretrained(args.encoder)
    args.cd_layer = None

    def emit(row: dict[str, Any]) -> None:
        out["rows"].append(row)
        save()
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k not in ("example", "params")}), flush=True)

    for label, path in models.items():
        run_model(label, path, args, encoder, held, emit, done)
    save()
    print("\nisotropy (mean token self-similarity):", json.dumps(out["isotropy"]))
    print(table(out["rows"]))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
