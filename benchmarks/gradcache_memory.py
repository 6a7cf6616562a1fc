"""GradCache memory: peak RSS and time of one training step, cached (chunks) vs the uncached batch.

Unsupervised SimCSE step (dropout views, InfoNCE tau 0.05, AdamW update) on all-MiniLM-L6-v2,
max length 32, sentences from the SentEval transfer sets. Each measurement runs in a fresh
subprocess (so peak RSS, ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, belongs to that one
step); configurations are interleaved and the median of ``--runs`` runs is reported, with the
ratios cached / uncached. Reported per run: RSS after loading (before the step), peak RSS, the
step's extra memory (peak - before) and the step's wall time. Precision fp32 (bf16 off).

GradCache: Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", 2021.

    python benchmarks/gradcache_memory.py [--batch 1024] [--chunk 32] [--runs 3]
    python benchmarks/gradcache_memory.py --quick      # batch 128, 1 run (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL, MAX_LEN, TAU = "all-MiniLM-L6-v2", 32, 0.05


def corpus(n: int) -> list[str]:
    """The first ``n`` distinct sentences of SentEval MR, SUBJ and CR."""
    from contrastkit.evaluation.senteval import resolve_senteval_dir

    root = resolve_senteval_dir()
    seen: dict[str, None] = {}
    for f in (root / "MR" / "rt-polarity.pos", root / "MR" / "rt-polarity.neg", root / "SUBJ" / "subj.objective",
              root / "SUBJ" / "subj.subjective", root / "CR" / "custrev.pos"):
        if f.is_file():
            for line in f.read_text(encoding="latin-1").splitlines():
                if line.strip():
                    seen.setdefault(line.strip(), None)
        if len(seen) >= n:
            break
    if len(seen) < n:
        raise SystemExit(f"need {n} sentences, found {len(seen)}")
    return list(seen)[:n]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(mode: str, batch: int, chunk: int, threads: int) -> dict[str, float]:
    """One training step in this (fresh) process; returns its memory and time."""
    import torch

    from contrastkit.data import Example
    from contrastkit.encoders import Encoder
    from contrastkit.losses import infonce
    from contrastkit.training.batch import as_embedded
    from contrastkit.training.negatives import CachedNegatives, InBatchNegatives
    from contrastkit.views import embed_batch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    examples = [Example(texts=(t,)) for t in corpus(batch)]
    enc = Encoder.from_pretrained(MODEL, pooling="mean", max_length=MAX_LEN)
    enc.train()
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-5)
    source = CachedNegatives(chunk) if mode == "cached" else InBatchNegatives()

    def embed(e, b):
        return as_embedded(embed_batch(e, b)).float()

    def loss_fn(a, p, n):
        return infonce(a, p, n, temperature=TAU)

    before = _maxrss_mb()
    t = time.perf_counter()
    loss = source.loss_and_backward(enc, examples, embed, loss_fn, 1.0)
    opt.step()
    seconds = time.perf_counter() - t
    peak = _maxrss_mb()
    return {"loss": loss, "rss_before_mb": before, "peak_rss_mb": peak, "step_extra_mb": peak - before,
            "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 128, 1 run")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", choices=["cached", "uncached"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch, args.chunk, args.threads)))
        return
    if args.quick:
        args.batch, args.runs = 128, 1
    out = Path(args.out or Path(__file__).parent / "results" / ("gradcache_memory_quick.json" if args.quick
                                                                 else "gradcache_memory.json"))
    runs: dict[str, list[dict[str, float]]] = {"uncached": [], "cached": []}
    for r in range(args.runs):
        for mode in ("uncached", "cached") if r % 2 == 0 else ("cached", "uncached"):
            cmd = [sys.executable, __file__, "--child", mode, "--batch", str(args.batch), "--chunk", str(args.chunk),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
            runs[mode].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    med = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in runs.items()}
    result = {
        "benchmark": "gradcache_memory",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": str(date.today()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": versions(),
        "setting": {"model": MODEL, "max_length": MAX_LEN, "batch": args.batch, "chunk": args.chunk,
                    "runs": args.runs, "threads": args.threads, "precision": "fp32",
                    "step": "unsup SimCSE dropout views + InfoNCE + AdamW update"},
        "median": med,
        "ratios": {
            "peak_rss_cached_over_uncached": med["cached"]["peak_rss_mb"] / med["uncached"]["peak_rss_mb"],
            "step_extra_mem_cached_over_uncached":
                med["cached"]["step_extra_mb"] / max(1e-9, med["uncached"]["step_extra_mb"]),
            "time_cached_over_uncached": med["cached"]["seconds"] / med["uncached"]["seconds"],
        },
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
