"""STS scoring with SimCSE's protocol (``evaluation.py --mode test --task_set sts``).

* Similarity is SentEval's cosine, ``nan_to_num(u.v / (|u| |v|))`` (zero vectors score 0),
  computed here in float64; there is no regressor.
* STS12-16: cosine for every scored pair of every subset, concatenated over the
  subsets of the year, then one Spearman over all pairs (SimCSE's "all").
* STS-B and SICK-R: Spearman of cosine against gold on the test split.
* Scores are Spearman x 100; "Avg." is the plain mean of the task scores (unrounded;
  SimCSE averages the 2-decimal strings, which can differ by 0.01).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from scipy.stats import pearsonr, spearmanr

from contrastkit.errors import DataError
from contrastkit.evaluation.senteval import STSTask, _load_cached, load_sts_task

__all__ = [
    "EncodeFn",
    "SIMCSE_DEV_TASKS",
    "SIMCSE_TASKS",
    "STSResults",
    "TaskResult",
    "evaluate_sts",
    "paired_cosine",
    "report_sts",
    "score_task",
    "sickr_dev",
    "stsb_dev",
]

EncodeFn = Callable[[list[str]], np.ndarray]
"""An encoder: a list of texts in, an ``(n, d)`` float array out."""

SIMCSE_TASKS: tuple[str, ...] = (
    "STS12",
    "STS13",
    "STS14",
    "STS15",
    "STS16",
    "STSBenchmark",
    "SICKRelatedness",
)
"""The seven tasks of SimCSE's STS table, in its column order."""

SIMCSE_DEV_TASKS: tuple[str, ...] = ("STSBenchmark-dev", "SICKRelatedness-dev")
"""Dev splits SimCSE uses for model selection (STS-B dev, SICK trial)."""

_SHORT = {
    "STSBenchmark": "STS-B",
    "SICKRelatedness": "SICK-R",
    "STSBenchmark-original": "STS-B (MTEB)",
    "STSBenchmark-dev": "STS-B dev",
    "SICKRelatedness-dev": "SICK-R dev",
}


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine as SentEval defines it: ``nan_to_num(u.v/(|u||v|))`` in float64."""
    a = np.nan_to_num(np.asarray(a, dtype=np.float64))
    b = np.nan_to_num(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired_cosine needs two equal (n, d) arrays, got {a.shape} and {b.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.nan_to_num(cos)


def _corr(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> float:
    """A scipy correlation as a float x 100 (nan when undefined, e.g. constant input)."""
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(fn(x, y)[0]) * 100.0


@dataclass
class TaskResult:
    """Scores of one task: Spearman and Pearson x 100 over all its pairs, per subset too."""

    name: str
    spearman: float
    pearson: float
    n: int
    subsets: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def aggregate(self, how: str = "all", metric: str = "spearman") -> float:
        """SentEval's aggregations over subsets: 'all' (pairs pooled), 'mean', or 'wmean' (weighted by pairs)."""
        if how == "all" or not self.subsets:
            return float(getattr(self, metric))
        vals = np.array([v[metric] for v in self.subsets.values()], dtype=np.float64)
        if how == "mean":
            return float(vals.mean())
        if how == "wmean":
            weights = np.array([v["n"] for v in self.subsets.values()], dtype=np.float64)
            return float((vals * weights).sum() / weights.sum())
        raise ValueError(f"unknown aggregation '{how}'; use all, mean or wmean")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "spearman": _json_float(self.spearman),
            "pearson": _json_float(self.pearson),
            "spearman_mean": _json_float(self.aggregate("mean")),
            "spearman_wmean": _json_float(self.aggregate("wmean")),
            "n": self.n,
            "subsets": {
                k: {kk: _json_float(vv) if kk != "n" else int(vv) for kk, vv in v.items()}
                for k, v in self.subsets.items()
            },
            "source": self.source,
            "notes": list(self.notes),
        }


def _json_float(x: float) -> float | None:
    """NaN becomes null so the JSON stays standard."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def score_task(task: STSTask, sims: np.ndarray) -> TaskResult:
    """Score one task from its per-pair similarities ("all" aggregation over subsets)."""
    sims = np.asarray(sims, dtype=np.float64)
    if sims.shape != (len(task),):
        raise ValueError(f"{task.name}: expected {len(task)} similarities, got shape {sims.shape}")
    subsets: dict[str, dict[str, float]] = {}
    groups = np.asarray(task.groups, dtype=object)
    names = task.subsets
    if len(names) > 1:
        for g in names:
            m = groups == g
            subsets[g] = {
                "spearman": _corr(spearmanr, sims[m], task.scores[m]),
                "pearson": _corr(pearsonr, sims[m], task.scores[m]),
                "n": int(m.sum()),
            }
    return TaskResult(
        name=task.name,
        spearman=_corr(spearmanr, sims, task.scores),
        pearson=_corr(pearsonr, sims, task.scores),
        n=len(task),
        subsets=subsets,
        source=task.source,
        notes=list(task.notes),
    )


@dataclass
class STSResults:
    """Results of :func:`evaluate_sts`: per-task scores, their average and timings."""

    tasks: dict[str, TaskResult]
    avg_tasks: list[str]
    elapsed_s: float
    encode_s: float = 0.0
    n_sentences: int = 0
    sims: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Per-pair cosine similarities of each task (for bootstrap tests and plots; not in ``to_dict``)."""

    @property
    def avg(self) -> float:
        """Mean Spearman x 100 over ``avg_tasks`` ("Avg." in SimCSE's table)."""
        vals = [self.tasks[t].spearman for t in self.avg_tasks if t in self.tasks]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def scores(self) -> dict[str, float]:
        """Spearman x 100 per task."""
        return {k: v.spearman for k, v in self.tasks.items()}

    def __getitem__(self, name: str) -> float:
        """Spearman x 100 of one task."""
        return self.tasks[name].spearman

    def _columns(self) -> tuple[list[str], list[str]]:
        """Header and value cells of the one-row summary table (Avg. after its tasks)."""
        head: list[str] = []
        vals: list[str] = []
        in_avg = [t for t in self.tasks if t in self.avg_tasks]
        rest = [t for t in self.tasks if t not in self.avg_tasks]
        for t in in_avg:
            head.append(_SHORT.get(t, t))
            vals.append(f"{self.tasks[t].spearman:.2f}")
        if len(in_avg) > 1:
            head.append("Avg.")
            vals.append(f"{self.avg:.2f}")
        for t in rest:
            head.append(_SHORT.get(t, t))
            vals.append(f"{self.tasks[t].spearman:.2f}")
        return head, vals

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: protocol, per-task results, average and timings."""
        return {
            "protocol": (
                "SimCSE/SentEval STS: cosine similarity, Spearman x100; STS12-16 'all' "
                "(pairs of all subsets concatenated); STS-B/SICK-R test split; no regressor"
            ),
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "avg": _json_float(self.avg),
            # the common SuiteResult keys (contrastkit.evaluation.results)
            "suite": "sts",
            "main_metric": "spearman",
            "average": _json_float(self.avg),
            "avg_tasks": list(self.avg_tasks),
            "n_sentences": self.n_sentences,
            "encode_s": round(self.encode_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_json(self, indent: int = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        """Markdown: SimCSE's one-row table, then per-task pairs, Pearson and subsets."""
        head, vals = self._columns()
        lines = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---:"] * len(head)) + "|",
            "| " + " | ".join(vals) + " |",
            "",
            "| Task | Spearman | Pearson | Pairs | Subsets (Spearman) |",
            "|---|---:|---:|---:|---|",
        ]
        for name, r in self.tasks.items():
            subs = ", ".join(f"{k} {v['spearman']:.2f}" for k, v in r.subsets.items())
            lines.append(f"| {name} | {r.spearman:.2f} | {r.pearson:.2f} | {r.n} | {subs} |")
        lines.append("")
        lines.append(
            f"Spearman x100 of cosine similarity (SimCSE/SentEval protocol); "
            f"{self.n_sentences} distinct sentences encoded in {self.encode_s:.1f} s, "
            f"{self.elapsed_s:.1f} s in all."
        )
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """Plain-text table like SimCSE's PrettyTable output."""
        head, vals = self._columns()
        widths = [max(len(h), len(v)) + 2 for h, v in zip(head, vals)]
        rule = "+" + "+".join("-" * w for w in widths) + "+"

        def row(cells: list[str]) -> str:
            return "|" + "|".join(c.center(w) for c, w in zip(cells, widths)) + "|"

        return "\n".join([rule, row(head), rule, row(vals), rule])


# ----------------------------------------------------------------------------- encoding
def _encode_checked(encode: EncodeFn, texts: list[str]) -> np.ndarray:
    """Call ``encode`` and check it returned one finite-shaped row per text."""
    out = encode(list(texts))
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().float().numpy()
    arr = np.asarray(out)
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise DataError(
            f"encode returned an array of shape {arr.shape} for {len(texts)} texts; "
            "expected (n_texts, dim)"
        )
    return arr.astype(np.float64, copy=False)


def evaluate_sts(
    encode: EncodeFn,
    tasks: Sequence[str | STSTask] = SIMCSE_TASKS,
    data_dir: str | os.PathLike[str] | None = None,
    batch_texts: bool = True,
    *,
    avg_tasks: Sequence[str] | None = None,
    hub: bool | None = None,
) -> STSResults:
    """Evaluate ``encode`` on STS tasks, encoding each distinct sentence once across tasks.

    ``tasks`` holds names (see ``STS_TASK_NAMES``) or loaded :class:`STSTask` objects.
    ``batch_texts=True`` makes one ``encode`` call with every distinct sentence;
    ``False`` makes one call per task with the sentences not encoded yet.
    ``avg_tasks`` picks the tasks of "Avg." (default: all evaluated tasks).
    """
    t0 = time.perf_counter()
    loaded: list[STSTask] = [
        t if isinstance(t, STSTask) else load_sts_task(t, data_dir, hub=hub) for t in tasks
    ]
    names = [t.name for t in loaded]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate task names in {names}")

    index: dict[str, int] = {}
    per_task_idx: list[tuple[np.ndarray, np.ndarray]] = []
    for t in loaded:
        ia = np.fromiter((index.setdefault(a, len(index)) for a, _ in t.pairs), np.int64, len(t))
        ib = np.fromiter((index.setdefault(b, len(index)) for _, b in t.pairs), np.int64, len(t))
        per_task_idx.append((ia, ib))
    texts = list(index)

    t_enc = time.perf_counter()
    emb: np.ndarray | None = None
    if batch_texts:
        if texts:
            emb = _encode_checked(encode, texts)
    else:
        chunks: list[np.ndarray] = []
        done = 0
        for ia, ib in per_task_idx:
            top = int(max(ia.max(initial=-1), ib.max(initial=-1))) + 1
            if top > done:
                chunks.append(_encode_checked(encode, texts[done:top]))
                done = top
        if chunks:
            dims = {c.shape[1] for c in chunks}
            if len(dims) != 1:
                raise DataError(f"encode returned different widths across calls: {sorted(dims)}")
            emb = np.concatenate(chunks, axis=0)
    encode_s = time.perf_counter() - t_enc

    results: dict[str, TaskResult] = {}
    all_sims: dict[str, np.ndarray] = {}
    for t, (ia, ib) in zip(loaded, per_task_idx):
        if len(t) == 0 or emb is None:
            sims = np.zeros(len(t))
        else:
            sims = paired_cosine(emb[ia], emb[ib])
        results[t.name] = score_task(t, sims)
        all_sims[t.name] = sims
    return STSResults(
        tasks=results,
        avg_tasks=list(avg_tasks) if avg_tasks is not None else names,
        elapsed_s=time.perf_counter() - t0,
        encode_s=encode_s,
        n_sentences=len(texts),
        sims=all_sims,
    )


def _dev_score(name: str, encode: EncodeFn, data_dir: str | os.PathLike[str] | None) -> float:
    """Spearman x 100 on one dev split (the split is read once and cached)."""
    task = _load_cached(name, None if data_dir is None else str(Path(data_dir).expanduser()))
    return evaluate_sts(encode, [task]).tasks[name].spearman


def stsb_dev(encode: EncodeFn, data_dir: str | os.PathLike[str] | None = None) -> float:
    """STS-B dev Spearman x 100 (SimCSE's model-selection metric)."""
    return _dev_score("STSBenchmark-dev", encode, data_dir)


def sickr_dev(encode: EncodeFn, data_dir: str | os.PathLike[str] | None = None) -> float:
    """SICK-R dev (SICK trial) Spearman x 100."""
    return _dev_score("SICKRelatedness-dev", encode, data_dir)


# ----------------------------------------------------------------------------- reporting
def report_sts(
    results: STSResults,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    stem: str = "sts",
    stream: TextIO | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Print the plain-text table; with ``out_dir``, also write ``<stem>.json`` and ``<stem>.md``."""
    out = stream if stream is not None else sys.stdout
    print(results.to_text(), file=out)
    print(
        f"{results.n_sentences} distinct sentences; encode {results.encode_s:.1f} s; "
        f"total {results.elapsed_s:.1f} s",
        file=out,
    )
    written: dict[str, Path] = {}
    if out_dir is not None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        data = results.to_dict()
        if extra:
            data["extra"] = dict(extra)
        jp, mp = d / f"{stem}.json", d / f"{stem}.md"
        jp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        mp.write_text(results.to_markdown(), encoding="utf-8")
        written = {"json": jp, "markdown": mp}
    return written
