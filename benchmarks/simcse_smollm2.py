"""Unsupervised SimCSE on a raw (not embedding-tuned) LM: SmolLM2-135M, CPU only.

Phases (default: all three, in order):

* ``baseline``: the untrained model on the 7 SimCSE STS tasks, for every standard pooling
  (mean / last_token / first_last_avg) on the same layers, from one forward pass per batch.
* ``train``: unsupervised SimCSE (dropout views, InfoNCE) on an unlabeled corpus built here
  (see :func:`build_corpus`), STS-B dev evaluated every ``--eval-every`` steps, best dev
  checkpoint kept (SimCSE practice).
* ``eval``: the selected checkpoint on the 7 tasks (same poolings, same precision).

    python benchmarks/simcse_smollm2.py                      # the final configuration, end to end
    python benchmarks/simcse_smollm2.py --phases train --max-steps 150 --tag explore-x ...

Writes ``benchmarks/results/simcse_smollm2.json`` (or ``simcse_smollm2-<tag>.json``) and prints
the table. All encoding (dev and test, before and after) uses bf16 autocast, batch 128,
max_length 32 -> same numerics for the untrained and the trained model.

The training loop is contrastkit's ``Trainer`` with the objects ``contrastkit.run.train`` builds
(``build_encoder``, ``build_loss``, ``RandomBatches``, ``embed_batch``); the script assembles them
itself only so the dev evaluation runs in bf16 (``run.build_eval`` always encodes in fp32, 4x
slower here) and so extra noise (embedding dropout) can be added with a forward hook.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from contrastkit.config import build_config  # noqa: E402
from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.encoders.encoder import autocast  # noqa: E402
from contrastkit.encoders.pooling import pool  # noqa: E402
from contrastkit.evaluation.senteval import load_sts_task, resolve_senteval_dir  # noqa: E402
from contrastkit.evaluation.sts import SIMCSE_TASKS, evaluate_sts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
POOLINGS = ("mean", "last_token", "first_last_avg")
EVAL_BATCH = 128
EVAL_PRECISION = "bf16"

# The final configuration (what `python benchmarks/simcse_smollm2.py` reruns).
FINAL = dict(backbone="smollm2-135m", pooling="mean", num_layers=None, max_length=32,
             attention_dropout=0.1, residual_dropout=None, embed_dropout=None,
             lr=3e-5, batch_size=32, temperature=0.05, max_steps=1000, warmup_ratio=0.0,
             eval_every=100, seed=42, freeze_embeddings=False, freeze_layers=20, threads=1,
             time_budget_min=58.0)


# ----------------------------------------------------------------------------- data
def _norm(s: str) -> str:
    return " ".join(s.split())


def eval_sentences(root: Path) -> set[str]:
    """Every sentence of every STS split used for evaluation or selection (normalized)."""
    out: set[str] = set()
    for name in (*SIMCSE_TASKS, "STSBenchmark-dev", "SICKRelatedness-dev"):
        for a, b in load_sts_task(name, str(root.parent)).pairs:
            out.add(_norm(a))
            out.add(_norm(b))
    return out


def build_corpus(path: Path) -> dict:
    """Unlabeled training sentences (labels dropped), deduplicated, with every STS eval sentence removed.

    Sources: MR, CR, SUBJ, MPQA (all sentences), TREC (train+test questions), SST-2 (train/dev/test
    sentences), SNLI s1/s2 of SentEval's dev+test files, STS-B *train* sentences (texts only).
    """
    root = resolve_senteval_dir()
    raw: dict[str, list[str]] = {}

    def lines(rel: str) -> list[str]:
        return (root / rel).read_text(encoding="utf-8", errors="replace").splitlines()

    raw["MR"] = lines("MR/rt-polarity.pos") + lines("MR/rt-polarity.neg")
    raw["CR"] = lines("CR/custrev.pos") + lines("CR/custrev.neg")
    raw["SUBJ"] = lines("SUBJ/subj.objective") + lines("SUBJ/subj.subjective")
    raw["MPQA"] = lines("MPQA/mpqa.pos") + lines("MPQA/mpqa.neg")
    raw["TREC"] = [ln.split(" ", 1)[1] for f in ("TREC/train_5500.label", "TREC/TREC_10.label")
                   for ln in lines(f) if " " in ln]
    raw["SST2"] = [ln.rsplit("\t", 1)[0] for f in ("sentiment-train", "sentiment-dev", "sentiment-test")
                   for ln in lines(f"SST/binary/{f}")]
    raw["SNLI"] = [ln for f in ("s1.dev", "s2.dev", "s1.test", "s2.test") for ln in lines(f"SNLI/{f}")]
    raw["STSB-train"] = [s for a, b in load_sts_task("STSBenchmark-train", str(root.parent)).pairs
                         for s in (a, b)]
    banned = eval_sentences(root)
    seen: set[str] = set()
    kept: list[str] = []
    stats = {}
    for src, sents in raw.items():
        n_new = n_banned = 0
        for s in sents:
            s = _norm(s)
            if len(s.split()) < 3 or s in seen:
                continue
            seen.add(s)
            if s in banned:
                n_banned += 1
                continue
            kept.append(s)
            n_new += 1
        stats[src] = {"raw": len(sents), "kept": n_new, "dropped_as_sts_eval_sentence": n_banned}
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return {"sentences": len(kept), "per_source": stats, "min_words": 3}


# ----------------------------------------------------------------------------- encoding
@torch.inference_mode()
def encode_all_poolings(enc: Encoder, texts: list[str]) -> dict[str, np.ndarray]:
    """Embeddings of ``texts`` under every pooling of POOLINGS from one forward pass per batch."""
    enc.eval()
    out = {p: np.empty((len(texts), enc.dim), dtype=np.float32) for p in POOLINGS}
    lengths = [len(i) for i in enc.tokenizer(texts, truncation=True, max_length=enc.max_length)["input_ids"]]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    with autocast(EVAL_PRECISION):
        for s in range(0, len(order), EVAL_BATCH):
            idx = order[s:s + EVAL_BATCH]
            feats = enc.tokenize([texts[i] for i in idx])
            o = enc.backbone(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"],
                             output_hidden_states=True, return_dict=True)
            for p in POOLINGS:
                out[p][idx] = pool(p, o.hidden_states, o.last_hidden_state, feats["attention_mask"]).float().numpy()
    return out


def sts7_all_poolings(enc: Encoder) -> tuple[dict[str, dict], float]:
    """7-task SimCSE STS table for each pooling (bf16, batch 128)."""
    t0 = time.perf_counter()
    cache: dict[str, np.ndarray] = {}
    index: dict[str, int] = {}

    def make(p: str):
        def f(texts: list[str]) -> np.ndarray:
            if not cache:
                cache.update(encode_all_poolings(enc, texts))
                index.update({t: i for i, t in enumerate(texts)})
            return cache[p][[index[t] for t in texts]]
        return f

    res = {}
    for p in POOLINGS:
        r = evaluate_sts(make(p), tasks=SIMCSE_TASKS)
        res[p] = {"tasks": {k: round(v, 2) for k, v in r.scores.items()}, "avg": round(r.avg, 2)}
    return res, time.perf_counter() - t0


def stsb_dev_eval(enc: Encoder) -> dict[str, float]:
    """STS-B dev Spearman x100 in bf16 (model selection)."""
    r = evaluate_sts(lambda t: enc.encode(t, batch_size=EVAL_BATCH, precision=EVAL_PRECISION),
                     tasks=["STSBenchmark-dev"])
    return {"STSBenchmark-dev": r.scores["STSBenchmark-dev"]}


# ----------------------------------------------------------------------------- training
def run_training(c: dict, out_dir: Path, corpus: Path) -> dict:
    from contrastkit.run import build_encoder, build_loss, load_training_examples
    from contrastkit.samplers import RandomBatches
    from contrastkit.training.trainer import Trainer
    from contrastkit.views import embed_batch

    cfg = build_config({
        "data": {"source": str(corpus), "kind": "single"},
        "model": {"backbone": c["backbone"], "pooling": c["pooling"], "max_length": c["max_length"],
                  "num_layers": c["num_layers"], "attention_dropout": c["attention_dropout"],
                  "residual_dropout": c["residual_dropout"]},
        "loss": {"temperature": c["temperature"]},
        "train": {"output_dir": str(out_dir), "batch_size": c["batch_size"], "lr": c["lr"], "epochs": 1,
                  "max_steps": c["max_steps"], "warmup_ratio": c["warmup_ratio"], "precision": "bf16",
                  "checkpoint_every": 100000, "seed": c["seed"], "progress": False, "log_every": 10},
        "eval": {"tasks": ["STSBenchmark-dev"], "every": c["eval_every"], "select_best": True},
    })
    examples, _ = load_training_examples(cfg.data)
    enc = build_encoder(cfg.model)
    if c.get("embed_dropout"):
        p = float(c["embed_dropout"])
        emb = enc.backbone.get_input_embeddings()
        emb.register_forward_hook(lambda m, a, o: torch.nn.functional.dropout(o, p, m.training))
    if c.get("freeze_embeddings") or c.get("freeze_layers"):
        enc.backbone.get_input_embeddings().weight.requires_grad_(False)
    if c.get("freeze_layers"):
        from contrastkit.encoders.backbones import layer_list
        for layer in list(layer_list(enc.backbone))[: c["freeze_layers"]]:
            layer.requires_grad_(False)
    # untrained dev score (same eval path) for the record
    t0 = time.perf_counter()
    dev0 = float("nan") if c.get("skip_dev0") else stsb_dev_eval(enc)["STSBenchmark-dev"]
    dev0_s = time.perf_counter() - t0
    print(f"untrained STS-B dev {dev0:.2f} ({dev0_s:.0f} s)", flush=True)
    trainer = Trainer(enc, build_loss(cfg.loss), embed_batch, cfg.train, eval_fn=_logged(stsb_dev_eval),
                      eval_every=cfg.eval.every, select_best=True)
    # contrastkit's Trainer builds AdamW(fused=False) -> the single-tensor loop on CPU (several s/step
    # here); use the fused CPU kernel over the trainable parameters instead (same maths).
    trainer._optimizer = lambda: torch.optim.AdamW(
        [{"params": [p for n, p in enc.named_parameters() if p.requires_grad and p.ndim >= 2 and "norm" not in n.lower()],
          "weight_decay": cfg.train.weight_decay},
         {"params": [p for n, p in enc.named_parameters() if p.requires_grad and (p.ndim < 2 or "norm" in n.lower())],
          "weight_decay": 0.0}], lr=cfg.train.lr, fused=True)
    t0 = time.perf_counter()
    source = _TimedBatches(RandomBatches(examples, cfg.train.batch_size, seed=cfg.train.seed),
                           c["time_budget_min"] * 60, t0)
    stopped = None
    try:
        res = trainer.fit(source)
        model_dir, steps, best = res.model_dir, res.steps, res.best_score
        history = res.history
        state = json.loads((out_dir / "train_state.json").read_text())
        best_step = state.get("best_step")
    except _TimeUp as e:  # budget spent: keep the best dev checkpoint saved so far
        stopped = str(e)
        print(stopped, flush=True)
        rows = [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        history = rows
        evals = [r for r in rows if "eval" in r]
        top = max(evals, key=lambda r: r["primary"])
        model_dir, steps, best, best_step = out_dir / "best", source.steps_seen, top["primary"], top["step"]
    wall = time.perf_counter() - t0
    hist = [h for h in history if "eval" in h]
    losses = [(h["step"], round(h["loss"], 4), round(h["elapsed_s"], 1)) for h in history if "loss" in h]
    return {"config": c, "n_train_sentences": len(examples), "untrained_dev": round(dev0, 2),
            "dev_curve": [(h["step"], round(h["primary"], 2)) for h in hist], "loss_curve": losses,
            "best_dev": round(best, 2) if best is not None else None, "stopped_by_time_budget": stopped,
            "best_step": best_step, "steps": steps, "train_wall_s": round(wall, 1),
            "s_per_step_incl_eval": round(wall / max(1, steps), 2), "model_dir": str(model_dir)}


class _TimeUp(Exception):
    pass


class _TimedBatches:
    """A batch source that stops the run (raises _TimeUp) once the wall-time budget is spent."""

    def __init__(self, inner, budget_s: float, t0: float) -> None:
        self.inner, self.budget_s, self.t0, self.steps_seen = inner, budget_s, t0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.inner.batches_per_epoch

    def batches(self, epoch: int, start: int = 0):
        for b in self.inner.batches(epoch, start):
            if time.perf_counter() - self.t0 > self.budget_s:
                raise _TimeUp(f"time budget {self.budget_s / 60:.0f} min spent after {self.steps_seen} batches")
            self.steps_seen += 1
            yield b


def _logged(fn):
    def f(enc):
        t0 = time.perf_counter()
        s = fn(enc)
        print(f"  dev {s['STSBenchmark-dev']:.2f} ({time.perf_counter() - t0:.0f} s) at {time.strftime('%H:%M:%S')}",
              flush=True)
        return s
    return f


# ----------------------------------------------------------------------------- report
SHORT = {"STSBenchmark": "STS-B", "SICKRelatedness": "SICK-R"}


def table(rows: list[tuple[str, dict]]) -> str:
    head = [SHORT.get(t, t) for t in SIMCSE_TASKS] + ["Avg."]
    lines = ["| Model | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{r['tasks'][t]:.2f}" for t in SIMCSE_TASKS)
                     + f" | {r['avg']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="baseline,train,eval")
    ap.add_argument("--tag", default="", help="results file suffix / run dir name (exploration runs)")
    ap.add_argument("--run-dir", default=None, help="default: a temp dir under /tmp")
    ap.add_argument("--model-dir", default=None, help="eval phase only: a trained model dir")
    for k, v in FINAL.items():
        typ = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(v, bool) else \
            (float if isinstance(v, float) or v is None else type(v))
        if k in ("num_layers", "max_steps", "batch_size", "max_length", "eval_every", "seed"):
            typ = int
        ap.add_argument("--" + k.replace("_", "-"), type=typ, default=v)
    ap.add_argument("--skip-dev0", action="store_true", help="skip the untrained dev eval (exploration)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)  # 1: the 2 cores are shared; 2 threads + a neighbour = ~8x slower steps
    c = {k: getattr(a, k) for k in FINAL}
    c["skip_dev0"] = a.skip_dev0
    c["backbone"] = str(c["backbone"])
    phases = a.phases.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = RESULTS / (f"simcse_smollm2-{a.tag}.json" if a.tag else "simcse_smollm2.json")
    result: dict = json.loads(out_json.read_text()) if out_json.is_file() else {}
    result.update({"machine": f"{cpu_model()}, {os.cpu_count()} cores, CPU only, "
                              f"torch {torch.__version__}, {torch.get_num_threads()} threads",
                   "date": time.strftime("%Y-%m-%d"), "command": "python " + " ".join(sys.argv),
                   "versions": versions(),
                   "eval_protocol": "SimCSE STS (STS12-16 'all', STS-B test, SICK-R test), Spearman x100, "
                                    f"cosine; encoding bf16 autocast, batch {EVAL_BATCH}, max_length {c['max_length']}"})

    def save():
        out_json.write_text(json.dumps(result, indent=2) + "\n")

    run_dir = Path(a.run_dir or f"/tmp/simcse_smollm2/{a.tag or 'final'}")
    if "baseline" in phases:
        enc = Encoder.from_pretrained(c["backbone"], pooling=c["pooling"], max_length=c["max_length"],
                                      num_layers=c["num_layers"])
        res, secs = sts7_all_poolings(enc)
        result["untrained"] = res | {"eval_s": round(secs, 1), "num_layers": c["num_layers"] or 30}
        save()
        print(f"untrained 7-task ({secs:.0f} s):")
        print(table([(f"untrained {p}", res[p]) for p in POOLINGS]), flush=True)
    if "train" in phases:
        with tempfile.TemporaryDirectory() as td:
            corpus = Path(td) / "corpus.txt"
            result["corpus"] = build_corpus(corpus)
            print("corpus:", json.dumps(result["corpus"]), flush=True)
            if run_dir.exists():
                import shutil
                shutil.rmtree(run_dir)
            t0 = time.perf_counter()
            result["train"] = run_training(c, run_dir, corpus)
            result["train"]["wall_s_incl_corpus_and_load"] = round(time.perf_counter() - t0, 1)
        save()
        print(json.dumps({k: v for k, v in result["train"].items() if k != "loss_curve"}, indent=1), flush=True)
    if "eval" in phases:
        model_dir = a.model_dir or result.get("train", {}).get("model_dir") or str(run_dir / "model")
        enc = Encoder.from_pretrained(model_dir, max_length=c["max_length"])
        res, secs = sts7_all_poolings(enc)
        result["trained"] = res | {"eval_s": round(secs, 1), "model_dir": model_dir, "trained_pooling": enc.pooling}
        save()
        rows = []
        if "untrained" in result:
            rows += [(f"untrained, {p}", result["untrained"][p]) for p in POOLINGS]
        rows += [(f"SimCSE (trained {enc.pooling}), eval {p}", res[p]) for p in POOLINGS]
        print(table(rows))
        if "untrained" in result:
            p = enc.pooling
            best = max(POOLINGS, key=lambda q: result["untrained"][q]["avg"])
            gain = res[p]["avg"] - result["untrained"][p]["avg"]
            gain_best = res[p]["avg"] - result["untrained"][best]["avg"]
            result["gain"] = {"same_pooling": round(gain, 2), "vs_best_untrained_pooling": round(gain_best, 2),
                              "best_untrained_pooling": best}
            save()
            print(f"gain ({p} vs untrained {p}): {gain:+.2f}; vs best untrained pooling ({best}): {gain_best:+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
