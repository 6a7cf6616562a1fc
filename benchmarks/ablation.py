"""CPU-scale ablation of contrastive sentence-embedding choices on a raw LM (contrastkit issue 4).

Every row is a whole contrastkit run (``contrastkit.run.train`` on a :class:`RunConfig` built here),
repeated over seeds, then scored on STS-B dev, STS-B test and SICK-R test (Spearman x 100, SimCSE
protocol, each distinct sentence encoded once, bf16). Rows:

* ``untrained``: the truncated backbone before any training (reference; deterministic, one run).
* ``simcse``: unsupervised SimCSE (Gao et al., 2021): dropout views, InfoNCE, tau 0.05 -- the baseline.
* ``dropout0``: the same with dropout off (two identical views).
* ``tau1``: the same with tau = 1.0.
* ``sup_pairs`` / ``sup_triplets``: supervised SimCSE on SNLI (premise, entailment) pairs with in-batch
  negatives only, vs the same pairs plus the contradiction hypothesis as a hard negative.
* catalog methods, each changing one component of ``simcse`` at the same steps and settings:
  ``esimcse`` (word repetition + momentum queue; Wu et al., 2022), ``clear`` (word deletion on both
  views; Wu et al., 2020), ``consert`` (token shuffle on both views; Yan et al., 2021), ``debiased``
  (debiased contrastive loss, tau_plus 0.1; Chuang et al., 2020); and ``promcse_hinge`` (PromCSE's
  energy-based hinge, Jiang et al., 2022) changing one component of ``sup_triplets``.

Settings shared by all runs (chosen so that the whole default ablation, 10 configs x 3 seeds plus the
untrained row, fits ~30-35 minutes on an idle 2-core CPU with 2 threads; the measurements behind them are
in ``CALIBRATION`` and in the JSON):

* backbone ``smollm2-135m`` (SmolLM2-135M, raw decoder LM) truncated to its first ``--layers`` (6)
  of 30 layers; token embeddings frozen (``model.freeze_layers=0``: 28M of the 50M parameters, a CPU
  economy); mean pooling; max_length 32.
* "dropout 0.1" = ``model.attention_dropout=0.1``. LLaMA blocks have no hidden dropout: on this backbone
  ``model.dropout`` sets only the attention dropout (``backbones.set_dropout`` finds no nn.Dropout and
  no hidden-dropout key), so attention dropout is the one dropout the architecture has; it is what
  makes the two SimCSE views differ. Every row but ``dropout0`` keeps it (as the papers keep BERT's).
* batch 32, lr 1e-4 (not SimCSE's 3e-5: too slow to act in 100 steps, see CALIBRATION) linear decay,
  no warmup, no gradient clipping (SimCSE), ``--steps`` (100) optimizer steps, bf16 autocast,
  ``--threads`` torch threads (2: run it on an otherwise idle machine; use 1 when the cores are shared).
* no evaluation during training (``eval.tasks=[]``, final weights kept); the final model is scored once.
* paper-specific settings that are NOT the component under test (ConSERT's tau 0.1 and lr 5e-7, the
  recipes' cls_mlp pooling, batch sizes) are replaced by the shared ones, so each delta isolates a
  single component.

Data (never STS evaluation data; every STS eval/dev sentence is removed from all training text):

* unsupervised: ``simcse_smollm2.build_corpus`` (MR, CR, SUBJ, MPQA, TREC, SST-2, SNLI s1/s2, STS-B
  *train* texts; ~111k sentences), written to a temp dir.
* supervised: SentEval's SNLI dev+test (no train split ships here): premises with both an entailment
  and a contradiction hypothesis -> (premise, entailment, contradiction) triplets; the pair rows use the
  same (premise, entailment) pairs without the third column. Written as JSONL to a temp dir.

    python benchmarks/ablation.py                       # the full ablation (~30-35 min, idle 2-core CPU)
    python benchmarks/ablation.py --quick               # smoke test: 1 seed, 10 steps, 2 configs
    python benchmarks/ablation.py --configs simcse,tau1 --seeds 1,2
    python benchmarks/ablation.py --probe simcse        # one full-size run: timing calibration

Writes ``benchmarks/results/ablation.json`` (``ablation-quick.json`` / ``ablation-probe.json`` for
the smoke / probe modes) after every run, and prints a Markdown table. A config that fails is recorded
with its error and the others go on. The ``paper`` field of each config states what its paper found,
for the reading in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402
from simcse_smollm2 import _norm, build_corpus, eval_sentences  # noqa: E402

from contrastkit.config import build_config  # noqa: E402
from contrastkit.encoders import Encoder  # noqa: E402
from contrastkit.evaluation.senteval import resolve_senteval_dir  # noqa: E402
from contrastkit.evaluation.sts import evaluate_sts  # noqa: E402
from contrastkit.run import train  # noqa: E402

try:  # transformers' per-load "Loading weights" bars would drown the log
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TASKS = ("STSBenchmark-dev", "STSBenchmark", "SICKRelatedness")
SHORT = {"STSBenchmark-dev": "STS-B dev", "STSBenchmark": "STS-B test", "SICKRelatedness": "SICK-R test"}
EVAL_BATCH = 128
EVAL_PRECISION = "bf16"

DEFAULTS = dict(backbone="smollm2-135m", layers=6, steps=100, batch_size=32, lr=1e-4, max_length=32,
                threads=2, seeds="1,2,3", freeze_embeddings=True)
# How the defaults were chosen (calibration runs of `--probe simcse`, 1 thread, on the 2-core Xeon while
# other jobs kept its load at ~6, so process-CPU seconds stand in for idle 1-thread wall time).
CALIBRATION = {
    "cpu_s_per_step_1_thread": 0.62, "eval_cpu_s": 15, "load_save_cpu_s": 5,
    "untrained_6_layers": {"STSBenchmark-dev": 66.91, "STSBenchmark": 52.82, "SICKRelatedness": 57.53},
    "simcse_120_steps_lr_3e-5": {"STSBenchmark-dev": 66.13, "STSBenchmark": 49.88, "SICKRelatedness": 55.97,
                                 "loss": [1.43, 0.26]},
    "simcse_120_steps_lr_1e-4": {"STSBenchmark-dev": 66.96, "STSBenchmark": 51.0, "SICKRelatedness": 55.96,
                                 "loss": [1.11, 0.03]},
    "budget": "30 trained runs x (100 steps x 0.62 + 20) s ~ 41 min of 1-thread CPU (heavier rows: esimcse's "
              "momentum encoder, triplets' third text, ~+25%); 2 threads on an idle machine are needed to fit "
              "~30-35 min; the script prints the projected time left after every run.",
    "lr": "1e-4, not SimCSE's 3e-5: at 3e-5 the loss is still 0.26 after 120 steps (the components under test "
          "barely act); at 1e-4 it converges (0.03). Neither lr beats the untrained 6-layer model at this scale.",
}


# ----------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class Ablation:
    """One row: how its run config differs from the shared base, and what its paper reported."""

    name: str
    what: str
    data: str  # "unsup" | "pairs" | "triplets"
    edit: Callable[[dict[str, Any]], None]
    paper: str
    reference: str = "simcse"


def _nothing(tree: dict[str, Any]) -> None:
    pass


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(tree: dict[str, Any]) -> None:
        node = tree
        *parents, key = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    return edit


def _all(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(tree: dict[str, Any]) -> None:
        for e in edits:
            e(tree)
    return edit


ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("simcse", "unsup SimCSE: attention dropout 0.1, tau 0.05 (baseline)", "unsup", _nothing,
             "Gao et al. 2021: unsup SimCSE BERT-base 76.3 avg STS (82.5 STS-B dev).", reference=""),
    Ablation("dropout0", "simcse, dropout 0 (identical views)", "unsup", _set("model.attention_dropout", 0.0),
             "Gao et al. 2021, Table 3: no dropout (p=0) gives ~71 STS-B dev vs 82.5 at p=0.1: "
             "without dropout noise the representation degrades ('collapse')."),
    Ablation("tau1", "simcse, tau 1.0", "unsup", _set("loss.temperature", 1.0),
             "Gao et al. 2021, appendix (temperature ablation): tau 0.05 is best; tau 1 is far worse "
             "(STS-B dev in the 60s vs 82.5)."),
    Ablation("sup_pairs", "supervised: SNLI (premise, entailment), in-batch negatives only", "pairs", _nothing,
             "Gao et al. 2021, Table 4: entailment pairs without hard negatives ~84.9 STS-B dev."),
    Ablation("sup_triplets", "supervised: + contradiction as hard negative", "triplets", _nothing,
             "Gao et al. 2021, Table 4: adding contradiction hard negatives raises STS-B dev ~84.9 -> ~86.2.",
             reference="sup_pairs"),
    Ablation("esimcse", "simcse + word repetition view (dup 0.32) + momentum queue (80 keys, m 0.995)", "unsup",
             _all(_set("views.name", "word_repetition"), _set("views.dup_rate", 0.32),
                  _set("negatives.source", "momentum_queue"), _set("negatives.queue_size", 80),
                  _set("negatives.momentum", 0.995)),
             "Wu et al. 2022 (ESimCSE): +2.0 avg STS over unsup SimCSE on BERT-base (78.3 vs 76.3)."),
    Ablation("clear", "simcse + word deletion (p 0.1) on both views", "unsup",
             _all(_set("views.name", "word_deletion"), _set("views.p", 0.1), _set("views.apply_to", "both")),
             "Gao et al. 2021, Table 2: discrete edits (crop, word deletion, synonyms) score BELOW dropout-only "
             "SimCSE on STS-B dev (word deletion 10%: ~76 vs 82.5). CLEAR (Wu et al. 2020) itself pre-trains "
             "with MLM + contrast, not comparable."),
    Ablation("consert", "simcse + token shuffle (embedding layer) on both views", "unsup",
             _all(_set("views.name", "token_shuffle"), _set("views.apply_to", "both")),
             "Yan et al. 2021 (ConSERT): shuffle/cutoff views beat no augmentation; unsup ConSERT BERT-base "
             "72.7 avg STS, below unsup SimCSE's 76.3 (SimCSE paper's comparison)."),
    Ablation("debiased", "simcse with the debiased contrastive loss (tau_plus 0.1)", "unsup",
             _all(_set("loss.name", "debiased"), _set("loss.tau_plus", 0.1)),
             "Chuang et al. 2020 (debiased CL): gains on vision/sentence tasks from correcting sampling bias; "
             "no sentence-STS result with SimCSE, so no specific expectation."),
    Ablation("promcse_hinge", "sup_triplets + PromCSE energy hinge (margin 0.2, weight 0.5)", "triplets",
             _all(_set("loss.name", "energy_hinge"), _set("loss.margin", 0.2), _set("loss.weight", 0.5)),
             "Jiang et al. 2022 (PromCSE): the energy-based hinge adds a small gain (<1 point avg STS) over "
             "supervised SimCSE (with soft prompts, which are not used here).", reference="sup_triplets"),
)}
QUICK_CONFIGS = ("simcse", "sup_triplets")


def base_tree(s: dict[str, Any], data: dict[str, Any], out_dir: Path, seed: int) -> dict[str, Any]:
    """The run config every row starts from (unsup SimCSE at the shared CPU settings)."""
    model = {"backbone": s["backbone"], "pooling": "mean", "max_length": s["max_length"],
             "num_layers": s["layers"], "attention_dropout": 0.1}
    if s["freeze_embeddings"]:
        model["freeze_layers"] = 0
    return {
        "data": data,
        "model": model,
        "loss": {"name": "infonce", "temperature": 0.05},
        "train": {"output_dir": str(out_dir), "batch_size": s["batch_size"], "lr": s["lr"], "epochs": 1,
                  "max_steps": s["steps"], "warmup_ratio": 0.0, "max_grad_norm": None, "weight_decay": 0.0,
                  "precision": "bf16", "num_threads": s["threads"], "device": "cpu", "seed": seed,
                  "checkpoint_every": 1_000_000, "keep_checkpoints": 1, "log_every": 10, "progress": False},
        "eval": {"tasks": [], "every": None, "select_best": False},
    }


def run_tree(a: Ablation, s: dict[str, Any], files: dict[str, Path], out_dir: Path, seed: int) -> dict[str, Any]:
    """The full config tree of row ``a`` for one seed."""
    if a.data == "unsup":
        data = {"source": str(files["corpus"]), "kind": "single"}
    elif a.data == "pairs":
        data = {"source": str(files["triplets"]), "kind": "pair", "columns": ["anchor", "positive"]}
    else:
        data = {"source": str(files["triplets"]), "kind": "triplet"}
    tree = base_tree(s, data, out_dir, seed)
    a.edit(tree)
    return tree


# ----------------------------------------------------------------------------- data
def build_snli_triplets(path: Path, banned: set[str] | None = None) -> dict[str, Any]:
    """(premise, entailment, contradiction) triplets from SentEval's SNLI dev+test, as JSONL.

    A premise is kept when it has at least one entailment and one contradiction hypothesis; each of its
    entailment hypotheses becomes one row, paired with one of its contradictions (round-robin). Rows
    with any sentence in ``banned`` (STS evaluation sentences) are dropped.
    """
    root = resolve_senteval_dir() / "SNLI"
    by_premise: dict[str, dict[str, list[str]]] = {}
    for split in ("dev", "test"):
        s1 = (root / f"s1.{split}").read_text(encoding="utf-8").splitlines()
        s2 = (root / f"s2.{split}").read_text(encoding="utf-8").splitlines()
        labels = (root / f"labels.{split}").read_text(encoding="utf-8").splitlines()
        if not len(s1) == len(s2) == len(labels):
            raise ValueError(f"{root}: s1/s2/labels.{split} differ in length ({len(s1)}, {len(s2)}, {len(labels)})")
        for p, h, lab in zip(s1, s2, labels):
            p, h, lab = _norm(p), _norm(h), lab.strip()
            if p and h and lab in ("entailment", "contradiction"):
                hyps = by_premise.setdefault(p, {"entailment": [], "contradiction": []})[lab]
                if h not in hyps:
                    hyps.append(h)
    banned = banned or set()
    rows, dropped = [], 0
    for p, hyps in by_premise.items():
        ent, con = hyps["entailment"], hyps["contradiction"]
        if not ent or not con:
            continue
        for i, e in enumerate(ent):
            c = con[i % len(con)]
            if p in banned or e in banned or c in banned:
                dropped += 1
                continue
            rows.append({"anchor": p, "positive": e, "negative": c})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"triplets": len(rows), "premises": len({r["anchor"] for r in rows}),
            "dropped_as_sts_eval_sentence": dropped, "source": "SentEval SNLI dev+test"}


# ----------------------------------------------------------------------------- runs
def score(enc: Encoder) -> tuple[dict[str, float], float, float]:
    """STS-B dev, STS-B test and SICK-R test (Spearman x100), each distinct sentence encoded once, bf16;
    with the wall and process-CPU seconds it took."""
    t0, c0 = time.perf_counter(), time.process_time()
    r = evaluate_sts(lambda t: enc.encode(t, batch_size=EVAL_BATCH, precision=EVAL_PRECISION), tasks=TASKS)
    return {k: round(v, 2) for k, v in r.scores.items()}, time.perf_counter() - t0, time.process_time() - c0


def run_untrained(s: dict[str, Any]) -> dict[str, Any]:
    """The truncated backbone before training (attention dropout is off at eval time anyway)."""
    t0 = time.perf_counter()
    enc = Encoder.from_pretrained(s["backbone"], pooling="mean", max_length=s["max_length"], num_layers=s["layers"])
    load_s = time.perf_counter() - t0
    scores, eval_s, _ = score(enc)
    return {"seed": None, "scores": scores, "load_s": round(load_s, 1), "eval_s": round(eval_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1)}


def run_one(a: Ablation, s: dict[str, Any], files: dict[str, Path], work: Path, seed: int) -> dict[str, Any]:
    """Train row ``a`` with ``seed`` via contrastkit.run.train, score the final model, delete the run dir."""
    out_dir = work / f"{a.name}-s{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = build_config(run_tree(a, s, files, out_dir, seed), origin=f"ablation '{a.name}'")
    res = train(cfg)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    losses = [h["loss"] for h in res.history if "loss" in h]
    enc = Encoder.from_pretrained(str(res.model_dir))
    scores, eval_s, eval_cpu_s = score(enc)
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"seed": seed, "scores": scores, "steps": res.steps,
            "first_loss": round(losses[0], 4) if losses else None,
            "final_loss": round(losses[-1], 4) if losses else None,
            "fit_s": round(res.seconds, 1), "s_per_step": round(res.seconds / max(1, res.steps), 2),
            "train_s_incl_load": round(train_s, 1), "eval_s": round(eval_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            # process CPU seconds: ~ the wall time a 1-thread run takes on an idle core (calibration aid)
            "train_cpu_s": round(train_cpu_s, 1), "eval_cpu_s": round(eval_cpu_s, 1),
            "cpu_s": round(time.process_time() - c0, 1)}


# ----------------------------------------------------------------------------- summary
def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std (ddof=1; 0 for one run) per task and for the 3-task average, over finished runs."""
    ok = [r for r in runs if "scores" in r]
    if not ok:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(ok)}
    for key in (*TASKS, "avg"):
        vals = np.array([(np.mean([r["scores"][t] for t in TASKS]) if key == "avg" else r["scores"][key]) for r in ok])
        out[key] = {"mean": round(float(vals.mean()), 2),
                    "std": round(float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, 2)}
    return out


def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float] | None:
    """a - b on the 3-task average, with the standard error of the difference of two means."""
    if not a.get("n") or not b.get("n"):
        return None
    se = math.sqrt(a["avg"]["std"] ** 2 / a["n"] + b["avg"]["std"] ** 2 / b["n"])
    return {"delta": round(a["avg"]["mean"] - b["avg"]["mean"], 2), "se": round(se, 2)}


def table(result: dict[str, Any]) -> str:
    """config | STS-B dev | STS-B test | SICK-R | avg (mean ± std over seeds) | Δ vs SimCSE | Δ vs reference."""
    head = ["config", *[SHORT[t] for t in TASKS], "avg of 3", "seeds", "Δ avg vs SimCSE", "Δ avg vs its reference"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]

    def cell(x: dict[str, float]) -> str:
        return f"{x['mean']:.2f} ± {x['std']:.2f}"

    base = result["configs"].get("simcse", {}).get("summary", {"n": 0})
    for name, row in result["configs"].items():
        sm = row["summary"]
        if not sm.get("n"):
            err = next((r.get("error", "") for r in row["runs"] if "error" in r), "not run")
            lines.append(f"| {name} | failed: {err.splitlines()[0][:80] if err else ''} |" + " |" * (len(head) - 2))
            continue
        d = delta(sm, base) if name != "simcse" else None
        ref = row.get("reference")
        dr = delta(sm, result["configs"][ref]["summary"]) if ref and ref in result["configs"] else None
        lines.append(f"| {name} | " + " | ".join(cell(sm[t]) for t in TASKS) + f" | {cell(sm['avg'])} | {sm['n']} | "
                     + (f"{d['delta']:+.2f} ± {d['se']:.2f}" if d else "—") + " | "
                     + (f"{dr['delta']:+.2f} ± {dr['se']:.2f} (vs {ref})" if dr and ref != "simcse" else "—") + " |")
    return "\n".join(lines)


def machine(threads: int) -> str:
    """CPU model, core count and torch threads."""
    return f"{cpu_model()}, {os.cpu_count()} cores, CPU only, {threads} torch threads"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=None,
                    help=f"comma-separated subset of: untrained,{','.join(ABLATIONS)} (default: all)")
    ap.add_argument("--seeds", default=DEFAULTS["seeds"])
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--layers", type=int, default=DEFAULTS["layers"], help="keep the first k of the 30 layers")
    ap.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    ap.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    ap.add_argument("--max-length", type=int, default=DEFAULTS["max_length"])
    ap.add_argument("--backbone", default=DEFAULTS["backbone"])
    ap.add_argument("--train-embeddings", action="store_true", help="also train the token embeddings")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 10 steps, simcse + sup_triplets")
    ap.add_argument("--probe", default=None, metavar="CONFIG", help="one full-size run of CONFIG, seed 1 (timing)")
    ap.add_argument("--resume", action="store_true", help="keep runs already in the results file (same settings)")
    ap.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/ablation.json; "
                                                    "-quick / -probe suffix in those modes)")
    a = ap.parse_args(argv)

    names = ["untrained", *ABLATIONS] if a.configs is None else [c.strip() for c in a.configs.split(",") if c.strip()]
    seeds = [int(x) for x in a.seeds.split(",")]
    steps, tag = a.steps, ""
    if a.quick:
        names, seeds, steps, tag = list(a.configs.split(",") if a.configs else QUICK_CONFIGS), seeds[:1], 10, "-quick"
    if a.probe:
        names, seeds, tag = [a.probe], seeds[:1], "-probe"
    unknown = [n for n in names if n != "untrained" and n not in ABLATIONS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; known: untrained, {', '.join(ABLATIONS)}")
    s = {"backbone": a.backbone, "layers": a.layers, "steps": steps, "batch_size": a.batch_size, "lr": a.lr,
         "max_length": a.max_length, "threads": a.threads, "freeze_embeddings": not a.train_embeddings}
    torch.set_num_threads(a.threads)

    out_json = Path(a.out) if a.out else RESULTS / f"ablation{tag}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out_json.read_text()) if a.resume and out_json.is_file() else {}
    if old and old.get("settings") != s:
        print("--resume: settings differ from the saved results; starting afresh", flush=True)
        old = {}
    result: dict[str, Any] = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(a.threads), "versions": versions(),
        "settings": s, "seeds": seeds, "calibration": CALIBRATION,
        "shared": "mean pooling; attention dropout 0.1 unless stated; batch {batch_size}; lr {lr:g} linear decay, no "
                  "warmup, no clipping; {steps} steps; bf16 autocast; first {layers} layers of {backbone}; token "
                  "embeddings {emb}; final weights (no dev selection); eval STS-B dev/test + SICK-R test, bf16 "
                  "encoding, Spearman x100 (SimCSE protocol)".format(
                      **s, emb="frozen" if s["freeze_embeddings"] else "trained"),
        "std": "sample std (ddof=1) over seeds; 'Δ ± se': difference of means ± standard error of that difference",
        "configs": {},
    }

    def save() -> None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ck-ablation-") as td:
        work = Path(td)
        files = {"corpus": work / "corpus.txt", "triplets": work / "snli_triplets.jsonl"}
        t0 = time.perf_counter()
        result["corpus"] = build_corpus(files["corpus"])
        result["snli"] = build_snli_triplets(files["triplets"], eval_sentences(resolve_senteval_dir()))
        result["data_s"] = round(time.perf_counter() - t0, 1)
        print(f"data: {result['corpus']['sentences']} unlabeled sentences, {result['snli']['triplets']} SNLI "
              f"triplets ({result['data_s']} s)", flush=True)
        for name in names:
            ab = ABLATIONS.get(name)
            result["configs"][name] = {
                "what": ab.what if ab else f"first {s['layers']} layers of {s['backbone']}, no training",
                "paper": ab.paper if ab else "", "reference": ab.reference if ab else "",
                "config": run_tree(ab, s, files, Path("<tmp>") / f"{name}-s<seed>", 0) if ab else None,
                "runs": [r for r in old.get("configs", {}).get(name, {}).get("runs", []) if "scores" in r]}
        order = [(n, None) for n in names if n == "untrained"] + \
                [(n, sd) for sd in seeds for n in names if n != "untrained"]  # seed-major: even partial results
        done: list[float] = []  # wall seconds of this invocation's trained runs (for the time-left estimate)
        for name, seed in order:
            row = result["configs"][name]
            if any(r.get("seed") == seed for r in row["runs"]):
                continue
            print(f"--- {name} seed {seed} ({time.strftime('%H:%M:%S')}, {time.perf_counter() - t_all:.0f} s in)",
                  flush=True)
            try:
                r = run_untrained(s) if name == "untrained" else run_one(ABLATIONS[name], s, files, work, seed)
            except Exception as err:  # record and go on with the other configs
                r = {"seed": seed, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
                print(f"FAILED {name} seed {seed}: {r['error']}", flush=True)
            else:
                if name != "untrained":
                    done.append(r["wall_s"])
                left = len(order) - order.index((name, seed)) - 1
                eta = f"; ~{left * float(np.mean(done)) / 60:.0f} min left for {left} runs" if done else ""
                print(f"{name} seed {seed}: {r['scores']} ({r['wall_s']} s{eta})", flush=True)
            row["runs"] = sorted([x for x in row["runs"] if x.get("seed") != seed] + [r],
                                 key=lambda x: (x.get("seed") is None, x.get("seed") or 0))
            row["summary"] = summarize(row["runs"])
            result["total_wall_s"] = round(time.perf_counter() - t_all, 1)
            save()
    for row in result["configs"].values():
        row["summary"] = summarize(row["runs"])
        ref = row.get("reference")
        if ref and ref in result["configs"]:
            row["delta_vs_reference"] = delta(row["summary"], result["configs"][ref]["summary"])
        if "simcse" in result["configs"]:
            row["delta_vs_simcse"] = delta(row["summary"], result["configs"]["simcse"]["summary"])
    result["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    result["table"] = table(result)
    save()
    print(result["table"])
    print(f"total {result['total_wall_s']:.0f} s; wrote {out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
