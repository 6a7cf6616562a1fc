"""Decoding speed: contrastive search vs greedy (ours), and our KV-cached greedy vs transformers' generate().

On the same model, prompts and batch, alternating the methods in every round, ``--repeats`` rounds; the median
tokens/s of each method and the ratios of the medians:

* ``contrastive_search / greedy`` (the issue asks >= 0.8: contrastive search's extra cost is the forward pass of
  the top-k candidates, batched as k x B rows of one step);
* ``greedy / hf_generate_greedy`` (>= 1: our cached greedy against ``model.generate(do_sample=False)``).

Every method generates exactly ``--max-new-tokens`` tokens per row (EOS off: ``eos_token_id=[]`` for ours,
``min_new_tokens`` for transformers), so tokens/s counts the same work. Prompts: the first 32 tokens of held-out
Bible passages (as benchmarks/generation_quality.py), left-padded.

    python benchmarks/generation_speed.py [--models smollm2-135m gemma3-270m --batch-sizes 1 8 --repeats 5]
    python benchmarks/generation_speed.py --models smollm2-135m --batch-sizes 2 --max-new-tokens 8 --repeats 2  # smoke
    python benchmarks/generation_speed.py --models smollm2-135m --batch-sizes 1 --repeats 1 --profile \
        --out benchmarks/results/generation_speed-profile.json    # where contrastive search's time goes

Writes ``benchmarks/results/generation_speed.json`` (``--out``) with the machine and package versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from generation_quality import make_prompts, passages  # noqa: E402


def methods(model: Any, ids: Any, mask: Any, n: int, pad: int, alpha: float, k: int) -> dict[str, Any]:
    from contrastkit.generation import contrastive_search, greedy_search

    def hf() -> int:
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, pad_token_id=pad)
        return (out.shape[1] - ids.shape[1]) * ids.shape[0]

    def ours() -> int:
        return int(greedy_search(model, ids, mask, max_new_tokens=n, eos_token_id=[]).num_new_tokens.sum())

    def cs() -> int:
        return int(contrastive_search(model, ids, mask, penalty_alpha=alpha, top_k=k, max_new_tokens=n,
                                      eos_token_id=[]).num_new_tokens.sum())

    return {"greedy": ours, "contrastive_search": cs, "hf_generate_greedy": hf}


OP_GROUPS = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
             "cache copies": ("aten::cat", "aten::copy_", "aten::index_select", "aten::repeat_interleave")}


def profile_ops(fn: Any) -> dict[str, float]:
    """Self CPU seconds of one call of ``fn`` by operator group (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    groups = dict.fromkeys([*OP_GROUPS, "other"], 0.0)
    for ev in prof.key_averages():
        group = next((g for g, names in OP_GROUPS.items() if ev.key in names), "other")
        groups[group] += ev.self_cpu_time_total / 1e6
    return {g: round(v, 3) for g, v in groups.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--penalty-alpha", type=float, default=0.6)
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="weights and activations")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one greedy and one contrastive-search call per row (seconds by operator group)")
    ap.add_argument("--out", default="benchmarks/results/generation_speed.json")
    args = ap.parse_args()

    import torch

    from contrastkit.lm import load_causal_lm

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    texts = passages("bible", min_words=int(args.prompt_tokens * 1.5))
    out: dict[str, Any] = {"benchmark": "generation_speed", "date": str(date.today()), "machine": cpu_model(),
                           "threads": torch.get_num_threads(), "versions": versions(), "args": vars(args),
                           "results": []}
    for name in args.models:
        model, tok = load_causal_lm(name, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
        prompts, _ = make_prompts(tok, texts, max(args.batch_sizes), args.prompt_tokens, 1)
        for bs in args.batch_sizes:
            enc = tok(prompts[:bs], return_tensors="pt", padding=True, padding_side="left")
            fns = methods(model, enc["input_ids"], enc["attention_mask"], args.max_new_tokens, tok.pad_token_id,
                          args.penalty_alpha, args.top_k)
            with torch.inference_mode():
                for fn in fns.values():  # warm-up
                    fn()
                rates: dict[str, list[float]] = {m: [] for m in fns}
                for r in range(args.repeats):
                    order = list(fns) if r % 2 == 0 else list(reversed(fns))
                    for m in order:
                        start = time.perf_counter()
                        tokens = fns[m]()
                        rates[m].append(tokens / (time.perf_counter() - start))
                profiles = {m: profile_ops(fns[m]) for m in ("greedy", "contrastive_search")} if args.profile else None
            med = {m: statistics.median(v) for m, v in rates.items()}
            row = {"model": name, "batch_size": bs, "max_new_tokens": args.max_new_tokens,
                   "median_tokens_per_s": med, "runs_tokens_per_s": rates,
                   "cs_over_greedy": med["contrastive_search"] / med["greedy"],
                   "greedy_over_hf": med["greedy"] / med["hf_generate_greedy"]}
            if profiles:
                row["profile_self_cpu_s"] = profiles
            out["results"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs_tokens_per_s"}), flush=True)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out} ({out['wall_s']} s)")


if __name__ == "__main__":
    main()
