"""Run every evaluation suite on one or more models and compare them (``contrastkit eval all``).

* STS: SimCSE's protocol (:mod:`contrastkit.evaluation.sts`), per-subset scores, Pearson and
  Spearman, SentEval's aggregations (all / mean / wmean) and a 95% percentile-bootstrap
  interval per task (Efron & Tibshirani, 1993).
* Transfer, clustering, retrieval: the suites of their own modules, run when their data exists.
* Geometry: alignment and uniformity (Wang & Isola, 2020) on STS-B test as SimCSE measures them
  (alignment over pairs scored above 4), anisotropy and effective rank.
* Models that came from a contrastkit training run also get their training curve
  (``metrics.jsonl``) and alignment/uniformity of every saved checkpoint (SimCSE's figure 2).
* Between models: a paired bootstrap test (Koehn, 2004) per STS task against the first model.

A suite whose data is missing is reported as skipped, with the reason; it never stops the run.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..data.readers import iter_json_objects
from ..errors import ConfigError, DataError
from .cache import EmbeddingCache, model_fingerprint
from .senteval import STS_TASK_NAMES, DataNotFoundError, STSTask, load_sts_task
from .significance import bootstrap_ci, paired_bootstrap
from .sts import SIMCSE_TASKS, EncodeFn, evaluate_sts

__all__ = [
    "SUITES",
    "evaluate_all",
    "checkpoint_geometry",
    "find_training_run",
    "read_training_history",
    "subsample_task",
]

SUITES: tuple[str, ...] = ("sts", "transfer", "clustering", "retrieval", "geometry")
"""Every suite :func:`evaluate_all` knows, in report order."""

# suite -> (module under contrastkit.evaluation, function); each returns an object with to_dict().
_EXTERNAL: dict[str, tuple[str, str]] = {
    "transfer": ("transfer", "evaluate_transfer"),
    "clustering": ("clustering", "evaluate_clustering"),
    "retrieval": ("retrieval_tasks", "evaluate_retrieval_suite"),
}

SIGNIFICANCE_LEVEL = 0.05
"""Two-sided p-value below which the report marks a difference with the first model (†)."""


@dataclass
class _Model:
    """One model under evaluation."""

    label: str
    path: str
    model_dir: Path | None
    run_dir: Path | None
    encoder: Any = None
    encode: EmbeddingCache | None = None
    sims: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def _json_float(x: float | None, digits: int | None = None) -> float | None:
    """NaN/None -> None (standard JSON); otherwise a float, optionally rounded."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits) if digits is not None else float(x)


def _is_run_dir(path: Path) -> bool:
    """Whether ``path`` is the output_dir of a contrastkit training run."""
    return (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir()


def find_training_run(path: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """The model directory to load and the training run it came from (None when it did not).

    ``path`` may be a run's ``output_dir`` (its ``model/`` is evaluated) or a model directory
    whose parent is such a run (``run/model``, ``run/best``).
    """
    p = Path(path).expanduser()
    if _is_run_dir(p):
        if (p / "model").is_dir():
            return p / "model", p
        raise ConfigError(f"{p} is a training run without a finished model/ directory; "
                          "pass a checkpoint's run once training has finished")
    if _is_run_dir(p.parent):
        return p, p.parent
    return p, None


def read_training_history(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Training and dev-evaluation rows of a run's ``metrics.jsonl`` (as the Trainer writes them)."""
    run = Path(run_dir)
    path = run / "metrics.jsonl"
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    if path.is_file():
        for _, row in iter_json_objects(path):
            if "eval" in row:
                evals.append({"step": row.get("step"), "primary": row.get("primary"), "eval": row["eval"]})
            elif "loss" in row:
                train.append({k: row.get(k) for k in ("step", "epoch", "loss", "lr", "sentences_per_s")})
    state_file = run / "train_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else None
    return {"run_dir": str(run), "train": train, "eval": evals, "train_state": state,
            "config": str(run / "config.yaml") if (run / "config.yaml").is_file() else None}


def subsample_task(task: STSTask, limit: int | None) -> STSTask:
    """At most ``limit`` pairs of ``task``, evenly spaced so every subset keeps some pairs."""
    if limit is None or len(task) <= limit:
        return task
    idx = np.unique(np.linspace(0, len(task) - 1, limit).round().astype(int))
    return STSTask(task.name, [task.pairs[i] for i in idx], task.scores[idx], [task.groups[i] for i in idx],
                   source=task.source, notes=[*task.notes, f"subsampled to {len(idx)} of {len(task)} pairs"])


def _unique_labels(paths: Sequence[str]) -> list[str]:
    """Short, distinct display names: the directory name, with parents added until unique."""
    parts = [Path(p).expanduser().parts or (str(p),) for p in paths]
    depth = 1
    while True:
        labels = ["/".join(pp[-depth:]) for pp in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(pp) for pp in parts):
            break
        depth += 1
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab}#{seen[lab]}")
    return out


def _make_encode(m: _Model, *, batch_size: int, precision: str, progress: bool,
                 cache_dir: str | os.PathLike[str] | None) -> EmbeddingCache:
    """One EmbeddingCache per model: each distinct sentence is encoded once across all suites."""
    encoder = m.encoder

    def raw(texts: list[str]) -> np.ndarray:
        return np.asarray(encoder.encode(list(texts), batch_size=batch_size, precision=precision,
                                         show_progress=progress and len(texts) > batch_size))

    fingerprint = None
    if cache_dir is not None:
        source = m.model_dir if m.model_dir is not None and m.model_dir.is_dir() else m.path
        fingerprint = model_fingerprint(source, extra={"precision": precision})
    return EmbeddingCache(raw, cache_dir=cache_dir, fingerprint=fingerprint,
                          model_info={"model": m.path, "precision": precision})


def _call_suite(fn: Callable[..., Any], encode: EncodeFn, **options: Any) -> Any:
    """Call a suite function with the options its signature accepts."""
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in options.items() if v is not None and (accepts_any or k in params)}
    return fn(encode, **kwargs)


def _skip(reason: str) -> dict[str, Any]:
    return {"skipped": True, "reason": reason}


# ----------------------------------------------------------------------------- STS
def _load_sts_tasks(names: Sequence[str], data_dir: Any, limit: int | None) -> tuple[list[STSTask], dict[str, str]]:
    """Load the STS tasks that have data; the others are returned with the reason."""
    tasks: list[STSTask] = []
    missing: dict[str, str] = {}
    for name in names:
        try:
            tasks.append(subsample_task(load_sts_task(name, data_dir), limit))
        except DataNotFoundError as err:
            missing[name] = str(err).splitlines()[0]
    return tasks, missing


def _sts_section(m: _Model, tasks: list[STSTask], missing: dict[str, str], *, n_boot: int,
                 seed: int) -> dict[str, Any]:
    """STS scores with aggregations and bootstrap CIs; keeps the per-pair similarities on ``m``."""
    names = [t.name for t in tasks]
    avg_tasks = [t for t in SIMCSE_TASKS if t in names] or names
    assert m.encode is not None
    res = evaluate_sts(m.encode, tasks, avg_tasks=avg_tasks)
    out = res.to_dict()
    gold = {t.name: t.scores for t in tasks}
    for name, tr in res.tasks.items():
        m.sims[name] = res.sims[name]
        d = out["tasks"][name]
        d["aggregations"] = {metric: {how: _json_float(tr.aggregate(how, metric)) for how in ("all", "mean", "wmean")}
                             for metric in ("spearman", "pearson")}
        if tr.n >= 3 and not math.isnan(tr.spearman):
            lo, hi = bootstrap_ci(res.sims[name], gold[name], n_boot=n_boot, seed=seed)
            d["ci95"] = [lo, hi]
        else:
            d["ci95"] = None
    out["aggregations"] = {how: _json_float(float(np.mean([res.tasks[t].aggregate(how) for t in avg_tasks])))
                           for how in ("all", "mean", "wmean")}
    out.update({"suite": "sts", "main_metric": "spearman", "average": out["avg"],
                "ci_level": 0.95, "n_boot": n_boot, "missing": missing})
    if "STSBenchmark" in res.sims:  # for the similarity-vs-gold scatter plot
        out["stsb_test_pairs"] = {"sim": [float(x) for x in res.sims["STSBenchmark"]],
                                  "gold": [float(x) for x in gold["STSBenchmark"]]}
    return out


def _compare(models: list[_Model], gold: dict[str, np.ndarray], *, n_boot: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap of every model against the first, per STS task (two-sided p-values)."""
    if len(models) < 2:
        return {}
    base = models[0]
    out: dict[str, Any] = {"baseline": base.label, "level": SIGNIFICANCE_LEVEL, "n_boot": n_boot,
                           "test": "paired bootstrap over pairs, two-sided (2 x the smaller one-sided p)",
                           "models": {}}
    for m in models[1:]:
        per_task: dict[str, Any] = {}
        for name, g in gold.items():
            if name not in m.sims or name not in base.sims or len(g) < 3:
                continue
            a, b = base.sims[name], m.sims[name]
            p_b_not_better = paired_bootstrap(b, a, g, n_boot=n_boot, seed=seed)
            p_a_not_better = paired_bootstrap(a, b, g, n_boot=n_boot, seed=seed)
            p = min(1.0, 2 * min(p_b_not_better, p_a_not_better))
            delta = 100 * (float(spearmanr(b, g)[0]) - float(spearmanr(a, g)[0]))
            per_task[name] = {"delta": _json_float(delta), "p_value": p, "significant": p < SIGNIFICANCE_LEVEL}
        out["models"][m.label] = per_task
    return out


# ----------------------------------------------------------------------------- geometry
def _stsb_positives_and_sample(task: STSTask, threshold: float, max_sentences: int
                               ) -> tuple[list[str], list[str], list[str]]:
    """SimCSE's selection: pairs scored above ``threshold`` and the distinct STS-B sentences."""
    pos = [p for p, s in zip(task.pairs, task.scores) if s > threshold]
    sample = sorted({t for pair in task.pairs for t in pair})[:max_sentences]
    return [p[0] for p in pos], [p[1] for p in pos], sample


def _geometry_of(encode: EncodeFn, task: STSTask, threshold: float = 4.0, max_sentences: int = 2000
                 ) -> dict[str, float]:
    """Alignment, uniformity, anisotropy and effective rank of ``encode`` on one STS-B task."""
    from .geometry import geometry

    left, right, sample = _stsb_positives_and_sample(task, threshold, max_sentences)
    if len(left) == 0:
        raise DataError(f"{task.name}: no pair scored above {threshold}; alignment is undefined")
    out = geometry((encode(left), encode(right)), encode(sample))
    out.update({"positive_pairs": len(left), "sentences": len(sample), "threshold": threshold})
    return out


def checkpoint_geometry(model_dir: str | os.PathLike[str], run_dir: str | os.PathLike[str], task: STSTask, *,
                        batch_size: int = 128, precision: str = "fp32", max_checkpoints: int | None = None,
                        progress: bool = False) -> list[dict[str, Any]]:
    """Alignment, uniformity and STS-B Spearman of every checkpoint a run kept (SimCSE, figure 2)."""
    from safetensors.torch import load_model

    from ..encoders.encoder import Encoder

    ckpts = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step-*") if p.is_dir()
                   and (p / "model.safetensors").is_file())
    if max_checkpoints is not None and len(ckpts) > max_checkpoints:
        keep = np.unique(np.linspace(0, len(ckpts) - 1, max_checkpoints).round().astype(int))
        ckpts = [ckpts[i] for i in keep]
    if not ckpts:
        return []
    enc = Encoder.from_pretrained(str(model_dir))
    rows = []
    for ck in ckpts:
        try:
            load_model(enc, str(ck / "model.safetensors"))
        except RuntimeError as err:
            raise DataError(f"checkpoint does not match the model in {model_dir}: {err}",
                            path=str(ck / "model.safetensors")) from None
        memo: dict[str, np.ndarray] = {}

        def encode(texts: list[str]) -> np.ndarray:
            todo = [t for t in dict.fromkeys(texts) if t not in memo]
            if todo:
                emb = np.asarray(enc.encode(todo, batch_size=batch_size, precision=precision,
                                            show_progress=progress and len(todo) > batch_size))
                memo.update(zip(todo, emb))
            return np.stack([memo[t] for t in texts])

        geo = _geometry_of(encode, task)
        sts = evaluate_sts(encode, [task]).tasks[task.name]
        rows.append({"step": int(ck.name.split("-")[-1]), "checkpoint": ck.name,
                     "alignment": geo["alignment"], "uniformity": geo["uniformity"],
                     "stsb_spearman": _json_float(sts.spearman)})
    return rows


# ----------------------------------------------------------------------------- main entry
def evaluate_all(
    model_paths: Sequence[str | os.PathLike[str]],
    *,
    suites: Sequence[str] = SUITES,
    data_dir: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    precision: str = "fp32",
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    tasks: Mapping[str, Sequence[str]] | None = None,
    limit: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    max_checkpoints: int | None = 20,
) -> dict[str, Any]:
    """Evaluate every model on every suite that has data; with ``output_dir`` also write the report.

    ``tasks`` maps a suite to the task names to run (default: each suite's standard set; for STS
    SimCSE's seven); ``limit`` caps the pairs/examples per task (quick looks and tests only: the
    numbers are then not comparable to published ones); ``n_boot`` sets the bootstrap resamples
    of CIs and tests; ``max_checkpoints`` caps the checkpoints measured per training run.
    Returns the report as plain JSON-able data (see :func:`contrastkit.evaluation.report.write_report`).
    """
    from ..encoders.encoder import Encoder

    if not model_paths:
        raise ConfigError("evaluate_all needs at least one model")
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if limit is not None and limit < 3:
        raise ConfigError(f"limit must be at least 3 (got {limit})")
    tasks = dict(tasks or {})
    bad = [s for s in tasks if s not in SUITES or s == "geometry"]
    if bad:
        raise ConfigError(f"tasks given for unknown suite(s) {', '.join(bad)}; "
                          f"choose from {', '.join(s for s in SUITES if s != 'geometry')}")
    t_start = time.perf_counter()
    suites = [s for s in SUITES if s in suites]
    labels = _unique_labels([str(p) for p in model_paths])
    models: list[_Model] = []
    for label, path in zip(labels, model_paths):
        model_dir, run_dir = find_training_run(path)
        models.append(_Model(label, str(path), model_dir, run_dir))

    # STS data is loaded once and shared by all models (and by geometry, which uses STS-B test).
    sts_names = list(tasks.get("sts") or SIMCSE_TASKS)
    unknown_sts = [t for t in sts_names if t not in STS_TASK_NAMES]
    if unknown_sts:
        raise ConfigError(f"unknown STS task(s) {', '.join(unknown_sts)}; known: {', '.join(STS_TASK_NAMES)}")
    sts_loaded, sts_missing = ([], {}) if "sts" not in suites else _load_sts_tasks(sts_names, data_dir, limit)
    stsb: STSTask | None = next((t for t in sts_loaded if t.name == "STSBenchmark"), None)
    stsb_missing = ""
    if stsb is None and ("geometry" in suites or any(m.run_dir for m in models)):
        loaded, miss = _load_sts_tasks(["STSBenchmark"], data_dir, limit)
        stsb = loaded[0] if loaded else None
        stsb_missing = miss.get("STSBenchmark", "")

    from tqdm.auto import tqdm

    bar = tqdm(total=len(models) * len(suites), desc="eval all", unit="suite", disable=not progress)
    entries: list[dict[str, Any]] = []
    for m in models:
        try:
            m.encoder = Encoder.from_pretrained(str(m.model_dir))
        except (OSError, ValueError) as err:
            raise ConfigError(f"--model {m.path}: cannot load a model from {m.model_dir} ({err})") from None
        m.encode = _make_encode(m, batch_size=batch_size, precision=precision, progress=progress,
                                cache_dir=cache_dir)
        results: dict[str, Any] = {}
        timings: dict[str, float] = {}
        for suite in suites:
            bar.set_postfix(model=m.label, suite=suite)
            t0 = time.perf_counter()
            results[suite] = _run_suite(suite, m, data_dir=data_dir, limit=limit, progress=progress,
                                        tasks=tasks.get(suite),
                                        sts_loaded=sts_loaded, sts_missing=sts_missing, stsb=stsb,
                                        stsb_missing=stsb_missing, n_boot=n_boot, seed=seed)
            timings[suite] = round(time.perf_counter() - t0, 3)
            bar.update(1)
        entry: dict[str, Any] = {"label": m.label, "path": m.path, "model_dir": str(m.model_dir),
                                 "suites": results, "suite_seconds": timings, "embedding_cache": m.encode.stats(),
                                 "training": None}
        if m.run_dir is not None:
            entry["training"] = _training_section(m, stsb, stsb_missing, batch_size=batch_size,
                                                  precision=precision, max_checkpoints=max_checkpoints,
                                                  progress=progress)
        entries.append(entry)
        m.encoder = None  # free the weights before the next model
    bar.close()

    gold = {t.name: t.scores for t in sts_loaded}
    report: dict[str, Any] = {
        "format": "contrastkit-eval-all/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "settings": {"suites": suites, "data_dir": None if data_dir is None else str(data_dir),
                     "batch_size": batch_size, "precision": precision, "limit": limit, "n_boot": n_boot,
                     "seed": seed, "tasks": {s: list(v) for s, v in tasks.items()}},
        "models": entries,
        "comparisons": _compare(models, gold, n_boot=n_boot, seed=seed) if "sts" in suites else {},
        "elapsed_s": round(time.perf_counter() - t_start, 3),
    }
    if output_dir is not None:
        from .report import write_report

        report["paths"] = {k: str(v) for k, v in write_report(report, output_dir).items()}
    return report


def _run_suite(suite: str, m: _Model, *, data_dir: Any, limit: int | None, progress: bool,
               tasks: Sequence[str] | None,
               sts_loaded: list[STSTask], sts_missing: dict[str, str], stsb: STSTask | None, stsb_missing: str,
               n_boot: int, seed: int) -> dict[str, Any]:
    """One suite for one model: its results as a dict, or a skip record saying why."""
    assert m.encode is not None
    if suite == "sts":
        if not sts_loaded:
            return _skip("no STS data: " + "; ".join(f"{k}: {v}" for k, v in sts_missing.items()))
        return _sts_section(m, sts_loaded, sts_missing, n_boot=n_boot, seed=seed)
    if suite == "geometry":
        if stsb is None:
            return _skip(f"geometry needs STS-B test: {stsb_missing}")
        t0 = time.perf_counter()
        geo = _geometry_of(m.encode, stsb)
        return {"suite": "geometry", "data": stsb.name, **geo, "elapsed_s": round(time.perf_counter() - t0, 3)}
    module, name = _EXTERNAL[suite]
    try:
        fn = getattr(importlib.import_module(f"contrastkit.evaluation.{module}"), name)
    except (ImportError, AttributeError) as err:
        return _skip(f"the {suite} suite is not available in this installation ({err})")
    try:
        res = _call_suite(fn, m.encode, tasks=None if tasks is None else list(tasks), data_dir=data_dir,
                          limit=limit, progress=progress, skip_missing=True)
    except (DataNotFoundError, FileNotFoundError) as err:
        return _skip(f"data missing: {str(err).splitlines()[0]}")
    except ValueError as err:  # unknown task names, a limit too small for the suite, ...
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{suite} suite: {err}") from err
    return res.to_dict() if hasattr(res, "to_dict") else dict(res)


def _training_section(m: _Model, stsb: STSTask | None, stsb_missing: str, *, batch_size: int, precision: str,
                      max_checkpoints: int | None, progress: bool) -> dict[str, Any]:
    """Training curve and per-checkpoint geometry of a model that came from a contrastkit run."""
    assert m.run_dir is not None and m.model_dir is not None
    hist = read_training_history(m.run_dir)
    if stsb is None:
        hist["checkpoints"] = []
        hist["checkpoints_skipped"] = f"needs STS-B test: {stsb_missing}"
    else:
        hist["checkpoints"] = checkpoint_geometry(m.model_dir, m.run_dir, stsb, batch_size=batch_size,
                                                  precision=precision, max_checkpoints=max_checkpoints,
                                                  progress=progress)
    return hist
