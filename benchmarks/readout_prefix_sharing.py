"""Prompt readouts with and without shared-prefix reuse: encode time and how far the vectors move.

At inference, :class:`contrastkit.encoders.readouts.Readout` runs the token prefix that a template's rows share
(instructions, demonstrations, the words before ``{text}``) once per batch and reuses its keys and values for
every row (``readouts.SHARE_PREFIXES``); with it off, every prompt runs whole and left-padded, as the reference
implementations do. Both ways encode the same sentences (the first ``--sentences`` distinct STS-B test sentences)
on the same model in alternating rounds; the script reports the median seconds of each, their ratio, and the
smallest cosine between a sentence's two vectors.

    python benchmarks/readout_prefix_sharing.py --threads 1
    python benchmarks/readout_prefix_sharing.py --models smollm2-135m --readouts metaeol --sentences 16 --repeats 1

Writes ``benchmarks/results/readout_prefix_sharing.json`` with the machine and package versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--readouts", nargs="+", default=["prompt", "prompt_icl", "knowledge", "metaeol"])
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "readout_prefix_sharing.json")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from contrastkit.encoders import Encoder
    from contrastkit.encoders import readouts
    from contrastkit.evaluation.senteval import load_sts_task

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = load_sts_task("STSBenchmark").pairs
    texts = list(dict.fromkeys(s for pair in pairs for s in pair))[:args.sentences]
    out = {"benchmark": "readout_prefix_sharing", "date": time.strftime("%Y-%m-%d"), "machine": cpu_model(),
           "threads": torch.get_num_threads(), "versions": versions(), "args": {**vars(args), "out": str(args.out)},
           "rows": []}
    for model in args.models:
        for name in args.readouts:
            enc = Encoder.from_pretrained(model, pooling=name)
            enc.eval()
            seconds: dict[bool, list[float]] = {True: [], False: []}
            vectors: dict[bool, np.ndarray] = {}

            def run(shared: bool) -> None:
                readouts.SHARE_PREFIXES = shared
                start = time.perf_counter()
                vectors[shared] = enc.encode(texts, batch_size=args.batch_size, precision=args.precision)
                seconds[shared].append(time.perf_counter() - start)

            try:
                run(True)  # warm-up (and the bf16 copy)
                seconds[True].clear()
                for r in range(args.repeats):
                    for shared in ((True, False) if r % 2 == 0 else (False, True)):
                        run(shared)
            finally:
                readouts.SHARE_PREFIXES = True
            a, b = vectors[True], vectors[False]
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            med = {k: statistics.median(v) for k, v in seconds.items()}
            row = {"model": model, "readout": name, "sentences": len(texts), "prompts_per_sentence":
                   len(enc.readout.prompts("x")), "shared_s": round(med[True], 2), "whole_s": round(med[False], 2),
                   "speedup": round(med[False] / med[True], 2), "min_cosine": round(float(cos.min()), 6),
                   "runs_s": {"shared": [round(x, 2) for x in seconds[True]],
                              "whole": [round(x, 2) for x in seconds[False]]}}
            out["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs_s"}), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2))
    print("\n| model | readout | prompts/sentence | shared prefix s | whole prompts s | speed-up | min cosine |"
          "\n|---|---|---:|---:|---:|---:|---:|")
    for r in out["rows"]:
        print(f"| {r['model']} | {r['readout']} | {r['prompts_per_sentence']} | {r['shared_s']} | {r['whole_s']} | "
              f"{r['speedup']}x | {r['min_cosine']} |")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
