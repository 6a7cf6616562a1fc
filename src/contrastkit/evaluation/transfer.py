"""SentEval transfer tasks: logistic regression on frozen sentence embeddings.

Tasks and protocol follow SentEval (Conneau & Kiela, 2018, "SentEval: An Evaluation Toolkit for
Universal Sentence Representations", LREC; ``senteval/{binary,sst,trec,mrpc}.py`` and
``senteval/tools/validation.py``), as SimCSE (Gao et al., 2021) reports them:

* MR, CR, SUBJ, MPQA (binary): all sentences of both classes, sorted as SentEval sorts them
  (by token count, then label; the order fixes the folds), k-fold outer cross-validation
  (``StratifiedKFold(k, shuffle=True, random_state=seed)``); in each outer training part the
  L2 strength is chosen by an inner k-fold CV (same splitter) over ``C in 2**range(-2, 4)``;
  the score is the mean test accuracy of the k outer folds. CR and MPQA keep their few empty
  lines as empty sentences, as SentEval does (3,775 and 10,606 sentences).
* SST2 (and SST5, optional): train/dev/test; ``C in 2**range(-2, 4)`` chosen on dev accuracy,
  test accuracy of the model trained on train with that C.
* TREC (6 coarse classes) and MRPC: ``C in 2**range(-1, 6)`` chosen by k-fold CV on train, then
  a model fit on all of train scores test. MRPC features are SentEval's
  ``np.c_[|u - v|, u * v]`` of the two sentences' embeddings; MRPC reports accuracy and F1
  of the paraphrase class.
* Text is SentEval's tokens joined by single spaces (``" ".join(line.split())``), as SimCSE's
  batcher passes it; the data is already lower-cased and tokenized. Files are read with
  SentEval's encodings (latin-1 for MR/CR/SUBJ/MPQA/TREC, utf-8 for SST/MRPC).
* As in SentEval, a grid score is the CV mean accuracy x 100 rounded to 2 decimals and the
  first best C wins; ``dev_acc`` is that best score (mean over outer folds for CV tasks).

Deviations from SentEval, and why:

* Solver: scikit-learn's ``LogisticRegression`` with L-BFGS (its current default; SentEval
  ran the 2017 default, liblinear, one-vs-rest). The objective is convex, so the solver only
  changes the optimum up to tolerance, except that liblinear also penalises the intercept
  and L-BFGS does not; multi-class TREC is multinomial rather than one-vs-rest. L-BFGS runs in
  float32 on one BLAS thread, walks each C grid in increasing order warm-started from the
  previous C's solution, and stops at ``tol=1e-4`` or 1,000 iterations (fits that hit the
  cap are counted in ``n_unconverged``). Measured on all-MiniLM-L6-v2 features of MR, one
  outer fold's inner search took 3.4 s against 90 s for liblinear from scratch (shared
  2-core machine), with the same best inner-CV accuracy (76.43); SentEval's exact procedure
  would need about 15 minutes for MR alone there.
* SimCSE's own tables use SentEval's PyTorch logistic regression (Adam, early stopping,
  weight decay in ``10**range(-5, -1)``); we use SentEval's scikit-learn path, the
  deterministic one, so our numbers are not expected to equal SimCSE's table exactly.
* Features are not standardised (neither SentEval nor SimCSE does): the embedding scale
  interacts with C exactly as in their numbers.

Every distinct sentence of a task is encoded once (wrap ``encode`` in
:class:`contrastkit.evaluation.cache.EmbeddingCache` to share sentences across tasks).
The same ``seed`` gives identical numbers.
"""

from __future__ import annotations

import copy
import io
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from contrastkit.errors import DataError
from contrastkit.evaluation.results import TableResults
from contrastkit.evaluation.senteval import DataNotFoundError, resolve_senteval_dir
from contrastkit.evaluation.sts import _encode_checked

__all__ = [
    "C_GRID",
    "C_GRID_KFOLD",
    "TRANSFER_TASKS",
    "TRANSFER_TASK_NAMES",
    "LabeledSplit",
    "TaskScore",
    "TransferResults",
    "TransferTask",
    "evaluate_transfer",
    "load_transfer_task",
]

EncodeFn = Callable[[list[str]], Any]

TRANSFER_TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
"""The seven transfer tasks of SimCSE's table, in its column order."""

TRANSFER_TASK_NAMES: tuple[str, ...] = (*TRANSFER_TASKS, "SST5")
"""Every task :func:`load_transfer_task` accepts (SST5: SentEval's fine-grained SST)."""

C_GRID: tuple[float, ...] = tuple(2.0**t for t in range(-2, 4))
"""Inverse L2 strengths SentEval searches for MR/CR/SUBJ/MPQA/SST (inner-CV and dev split)."""

C_GRID_KFOLD: tuple[float, ...] = tuple(2.0**t for t in range(-1, 6))
"""Inverse L2 strengths SentEval searches for TREC and MRPC (k-fold CV on train)."""

MAX_ITER = 1000
TOL = 1e-4
TREC_CLASSES: tuple[str, ...] = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
"""TREC coarse classes, in SentEval's label order."""

Protocol = Literal["cv", "split", "kfold"]

# name -> (folder, protocol, files)
_BINARY_FILES: dict[str, tuple[str, str, str]] = {
    "MR": ("MR", "rt-polarity.pos", "rt-polarity.neg"),
    "CR": ("CR", "custrev.pos", "custrev.neg"),
    "SUBJ": ("SUBJ", "subj.objective", "subj.subjective"),  # label 1 = objective, as SentEval
    "MPQA": ("MPQA", "mpqa.pos", "mpqa.neg"),
}


@dataclass
class LabeledSplit:
    """Labelled sentences (or sentence pairs, with ``texts_b``) of one split."""

    texts: list[str]
    labels: np.ndarray
    texts_b: list[str] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels) or (self.texts_b is not None and len(self.texts_b) != len(self.texts)):
            raise ValueError("texts, texts_b and labels differ in length")

    def __len__(self) -> int:
        """Number of examples."""
        return len(self.texts)

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabeledSplit:
        """The examples at ``idx``, in that order."""
        idx = [int(i) for i in idx]
        return LabeledSplit([self.texts[i] for i in idx], self.labels[idx],
                            None if self.texts_b is None else [self.texts_b[i] for i in idx])


@dataclass
class TransferTask:
    """A classification task: its splits (``all`` for CV tasks) and evaluation protocol."""

    name: str
    protocol: Protocol
    n_classes: int
    splits: dict[str, LabeledSplit]
    source: str = ""

    @property
    def pairs(self) -> bool:
        """Whether examples are sentence pairs (MRPC)."""
        return next(iter(self.splits.values())).texts_b is not None

    def distinct_texts(self) -> list[str]:
        """Every distinct sentence of the task, in order of first appearance."""
        seen: dict[str, None] = {}
        for s in self.splits.values():
            seen.update(dict.fromkeys(s.texts))
            if s.texts_b is not None:
                seen.update(dict.fromkeys(s.texts_b))
        return list(seen)

    def labelled(self) -> tuple[list[str], np.ndarray]:
        """Every (sentence, label) of all splits, split after split (single-sentence tasks)."""
        texts = [t for s in self.splits.values() for t in s.texts]
        return texts, np.concatenate([np.asarray(s.labels) for s in self.splits.values()])


# ----------------------------------------------------------------------------- loading
def _tok(s: str) -> str:
    """SimCSE's batcher text from SentEval's tokens."""
    return " ".join(s.split())


def _need(path: Path, task: str) -> Path:
    if not path.is_file():
        raise DataNotFoundError(
            f"{task} data not found: {path} is missing. Transfer tasks need SentEval's downstream "
            "data (data/downstream/get_transfer_data.bash in https://github.com/facebookresearch/SentEval); "
            "pass --data-dir DIR (Python: data_dir=...) or set CONTRASTKIT_DATA.", searched=[path])
    return path


def _sentences(path: Path) -> list[str]:
    with io.open(path, "r", encoding="latin-1") as fh:
        return [_tok(line) for line in fh.read().splitlines()]


def _sorted_split(texts: list[str], labels: list[int], texts_b: list[str] | None = None) -> LabeledSplit:
    """SentEval's order: by token count (then the partner's for pairs), then label; stable."""
    def key(i: int) -> tuple[int, ...]:
        if texts_b is None:
            return len(texts[i].split()), labels[i]
        return len(texts[i].split()), len(texts_b[i].split()), labels[i]

    return LabeledSplit(texts, np.asarray(labels), texts_b).subset(sorted(range(len(texts)), key=key))


def _load_binary(name: str, root: Path) -> TransferTask:
    folder, pos_f, neg_f = _BINARY_FILES[name]
    pos = _sentences(_need(root / folder / pos_f, name))
    neg = _sentences(_need(root / folder / neg_f, name))
    split = _sorted_split(pos + neg, [1] * len(pos) + [0] * len(neg))
    return TransferTask(name, "cv", 2, {"all": split}, source=str(root / folder))


def _load_sst(name: str, root: Path) -> TransferTask:
    fine = name == "SST5"
    folder = root / "SST" / ("fine" if fine else "binary")
    splits: dict[str, LabeledSplit] = {}
    for split in ("train", "dev", "test"):
        path = _need(folder / f"sentiment-{split}", name)
        texts: list[str] = []
        labels: list[int] = []
        with io.open(path, "r", encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                parts = line.strip().split(" ", 1) if fine else line.strip().split("\t")
                if fine:
                    parts = parts[::-1]
                if len(parts) < 2:
                    raise DataError("expected a sentence and a label", path=str(path), line=i)
                try:
                    y = int(parts[1])
                except ValueError:
                    raise DataError(f"label {parts[1]!r} is not an integer", path=str(path), line=i) from None
                texts.append(_tok(parts[0]))
                labels.append(y)
        splits[split] = _sorted_split(texts, labels)
    return TransferTask(name, "split", 5 if fine else 2, splits, source=str(folder))


def _load_trec_file(path: Path) -> LabeledSplit:
    texts: list[str] = []
    labels: list[int] = []
    with io.open(path, "r", encoding="latin-1") as fh:
        for i, line in enumerate(fh, 1):
            target, _, rest = line.strip().partition(":")
            if target not in TREC_CLASSES or " " not in rest:
                raise DataError(f"expected 'COARSE:fine question', got {line.strip()[:60]!r}", path=str(path), line=i)
            texts.append(_tok(rest.split(" ", 1)[1]))
            labels.append(TREC_CLASSES.index(target))
    return _sorted_split(texts, labels)


def _load_trec(root: Path) -> TransferTask:
    d = root / "TREC"
    return TransferTask("TREC", "kfold", 6, {"train": _load_trec_file(_need(d / "train_5500.label", "TREC")),
                                             "test": _load_trec_file(_need(d / "TREC_10.label", "TREC"))},
                        source=str(d))


def _load_mrpc_file(path: Path) -> LabeledSplit:
    a: list[str] = []
    b: list[str] = []
    y: list[int] = []
    with io.open(path, "r", encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if i == 1:
                continue  # header
            f = line.strip().split("\t")
            if len(f) < 5 or f[0] not in ("0", "1"):
                raise DataError("expected 'Quality<TAB>id<TAB>id<TAB>sentence<TAB>sentence' with Quality 0/1",
                                path=str(path), line=i)
            a.append(_tok(f[3]))
            b.append(_tok(f[4]))
            y.append(int(f[0]))
    return _sorted_split(a, y, b)


def _load_mrpc(root: Path) -> TransferTask:
    d = root / "MRPC"
    return TransferTask("MRPC", "kfold", 2,
                        {"train": _load_mrpc_file(_need(d / "msr_paraphrase_train.txt", "MRPC")),
                         "test": _load_mrpc_file(_need(d / "msr_paraphrase_test.txt", "MRPC"))},
                        source=str(d))


def load_transfer_task(name: str, data_dir: str | os.PathLike[str] | None = None, *,
                       needed_for: str | None = None) -> TransferTask:
    """Load one task of :data:`TRANSFER_TASK_NAMES` from SentEval's downstream folder.

    ``needed_for`` names the task in the not-found message (default: "transfer task NAME").
    """
    if name not in TRANSFER_TASK_NAMES:
        raise ValueError(f"unknown transfer task {name!r}; expected one of {', '.join(TRANSFER_TASK_NAMES)}")
    root = resolve_senteval_dir(data_dir, needed_for=needed_for or f"transfer task {name}")
    if name in _BINARY_FILES:
        return _load_binary(name, root)
    if name in ("SST2", "SST5"):
        return _load_sst(name, root)
    if name == "TREC":
        return _load_trec(root)
    return _load_mrpc(root)


def _limit_task(task: TransferTask, limit: int, seed: int) -> TransferTask:
    """At most ``limit`` random examples per split (SentEval order kept); for quick checks only."""
    rng = np.random.default_rng(seed)
    splits = {}
    for k, s in task.splits.items():
        idx = np.arange(len(s)) if len(s) <= limit else np.sort(rng.choice(len(s), limit, replace=False))
        splits[k] = s.subset(idx)
    return TransferTask(task.name, task.protocol, task.n_classes, splits, task.source)


# ----------------------------------------------------------------------------- classifier
def _c_path(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, grid: Sequence[float],
            seed: int, keep: bool = False) -> tuple[list[float], list[LogisticRegression]]:
    """Test accuracy of an L2 logistic regression for each C (increasing, warm-started)."""
    clf = LogisticRegression(C=grid[0], solver="lbfgs", max_iter=MAX_ITER, tol=TOL, warm_start=True,
                             random_state=seed)
    accs: list[float] = []
    models: list[LogisticRegression] = []
    for c in grid:
        clf.set_params(C=c)
        clf.fit(x_tr, y_tr)
        accs.append(float(clf.score(x_te, y_te)))
        if keep:
            models.append(copy.deepcopy(clf))
    return accs, models


def _cv_select(x: np.ndarray, y: np.ndarray, grid: Sequence[float], k: int, seed: int) -> tuple[float, float]:
    """(best C, its CV accuracy x100 rounded to 2 decimals) by stratified k-fold CV, as SentEval picks it."""
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    acc = np.zeros(len(grid))
    for tr, te in skf.split(x, y):
        acc += _c_path(x[tr], y[tr], x[te], y[te], grid, seed)[0]
    scores = [round(100 * a / k, 2) for a in acc]
    best = int(np.argmax(scores))
    return grid[best], scores[best]


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> LogisticRegression:
    return LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, tol=TOL, random_state=seed).fit(x, y)


@dataclass
class TaskScore:
    """One transfer task's result: test accuracy (x100), dev accuracy, chosen C (per fold for CV tasks)."""

    name: str
    acc: float
    dev_acc: float
    n_train: int
    n_test: int
    cs: list[float]
    f1: float | None = None
    protocol: str = ""
    n_sentences: int = 0
    n_unconverged: int = 0
    classifier_s: float = 0.0

    @property
    def C(self) -> float:  # noqa: N802 - the usual name of the parameter
        """The chosen C (for CV tasks the one chosen most often; ties: the smaller)."""
        counts = Counter(self.cs)
        return min(counts, key=lambda c: (-counts[c], c))

    def metrics(self) -> dict[str, Any]:
        """Flat metric dictionary."""
        out: dict[str, Any] = {"acc": self.acc}
        if self.f1 is not None:
            out["f1"] = self.f1
        out.update(dev_acc=self.dev_acc, C=self.C, n_train=self.n_train, n_test=self.n_test,
                   n_unconverged=self.n_unconverged)
        return out


def _run_task(task: TransferTask, emb: dict[str, np.ndarray], k: int, seed: int) -> TaskScore:
    def feats(s: LabeledSplit) -> np.ndarray:
        a = np.stack([emb[t] for t in s.texts])
        if s.texts_b is None:
            return a
        b = np.stack([emb[t] for t in s.texts_b])
        return np.c_[np.abs(a - b), a * b]

    if task.protocol == "cv":
        s = task.splits["all"]
        x, y = feats(s), s.labels
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        test_acc, dev_acc, cs = [], [], []
        for tr, te in skf.split(x, y):
            c, dev = _cv_select(x[tr], y[tr], C_GRID, k, seed)
            clf = _fit(x[tr], y[tr], c, seed)
            test_acc.append(round(100 * float(clf.score(x[te], y[te])), 2))
            dev_acc.append(dev)
            cs.append(c)
        return TaskScore(task.name, float(np.mean(test_acc)), float(np.mean(dev_acc)), len(s), len(s), cs,
                         protocol=f"{k}-fold CV, C by inner {k}-fold CV")
    if task.protocol == "split":
        tr, dv, te = (task.splits[n] for n in ("train", "dev", "test"))
        accs, models = _c_path(feats(tr), tr.labels, feats(dv), dv.labels, C_GRID, seed, keep=True)
        scores = [round(100 * a, 2) for a in accs]
        best = int(np.argmax(scores))
        acc = 100 * float(models[best].score(feats(te), te.labels))
        return TaskScore(task.name, acc, scores[best], len(tr), len(te), [C_GRID[best]],
                         protocol="train/dev/test, C on dev")
    tr, te = task.splits["train"], task.splits["test"]
    x_tr, x_te = feats(tr), feats(te)
    c, dev = _cv_select(x_tr, tr.labels, C_GRID_KFOLD, k, seed)
    clf = _fit(x_tr, tr.labels, c, seed)
    pred = clf.predict(x_te)
    acc = 100 * float(np.mean(pred == te.labels))
    f1 = 100 * float(f1_score(te.labels, pred)) if task.pairs else None
    return TaskScore(task.name, acc, dev, len(tr), len(te), [c], f1=f1, protocol=f"C by {k}-fold CV on train")


# ----------------------------------------------------------------------------- results
@dataclass
class TransferResults(TableResults):
    """Results of :func:`evaluate_transfer`: per-task accuracy (x100), average, timings."""

    tasks: dict[str, TaskScore]
    elapsed_s: float = 0.0
    encode_s: float = 0.0
    classifier_s: float = 0.0
    n_sentences: int = 0
    seed: int = 1111
    kfold: int = 10
    limit: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    suite = "transfer"
    main_metric = "acc"
    columns = ("acc", "f1", "dev_acc", "C", "n_test")

    def task_metrics(self) -> dict[str, dict[str, Any]]:
        """Per-task metrics: acc, f1 (MRPC), dev_acc, C, n_train, n_test."""
        return {name: t.metrics() for name, t in self.tasks.items()}

    def extra_dict(self) -> dict[str, Any]:
        """Protocol, timings and the C chosen in every fold."""
        return {
            "protocol": (f"SentEval transfer: logistic regression (sklearn L-BFGS) on frozen embeddings, "
                         f"{self.kfold}-fold CV, seed {self.seed}; accuracy x100 (MRPC also F1)"),
            "C_per_fold": {n: list(t.cs) for n, t in self.tasks.items()},
            "encode_s": round(self.encode_s, 3),
            "classifier_s": round(self.classifier_s, 3),
            "classifier_s_per_task": {n: round(t.classifier_s, 3) for n, t in self.tasks.items()},
            "n_sentences": self.n_sentences,
            "seed": self.seed,
            "kfold": self.kfold,
            "limit": self.limit,
        }

    @property
    def note(self) -> str:  # type: ignore[override]
        """Footnote of the Markdown table."""
        extra = f" Subsampled to {self.limit} examples per split (not comparable)." if self.limit else ""
        return (f"Accuracy x100, logistic regression on frozen embeddings (SentEval protocol, {self.kfold}-fold, "
                f"seed {self.seed}); encode {self.encode_s:.1f} s, classifiers {self.classifier_s:.1f} s.{extra}")


def evaluate_transfer(encode: EncodeFn, tasks: Sequence[str] = TRANSFER_TASKS,
                      data_dir: str | os.PathLike[str] | None = None, *, seed: int = 1111, kfold: int = 10,
                      progress: bool = False, limit: int | None = None,
                      skip_missing: bool = False) -> TransferResults:
    """Run SentEval transfer tasks on ``encode`` (texts -> ``(n, d)`` array); see the module docstring.

    ``limit`` keeps at most that many random examples per split: for quick checks and tests
    only, the numbers are then not comparable to published ones. With ``skip_missing`` a task
    whose data is missing is listed in ``skipped`` with the reason (all missing still raises).
    """
    if kfold < 2:
        raise ValueError(f"kfold must be >= 2, got {kfold}")
    if limit is not None and limit < 2 * kfold:
        raise ValueError(f"limit must be at least 2 * kfold = {2 * kfold}, got {limit}")
    names = list(tasks)
    for n in names:
        if n not in TRANSFER_TASK_NAMES:
            raise ValueError(f"unknown transfer task {n!r}; expected one of {', '.join(TRANSFER_TASK_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate task names in {names}")
    t0 = time.perf_counter()
    it: Any = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="transfer", unit="task")
    out: dict[str, TaskScore] = {}
    encode_s = clf_s = 0.0
    n_sent = 0
    skipped: dict[str, str] = {}
    for name in it:
        if progress:
            it.set_postfix_str(name)
        try:
            task = load_transfer_task(name, data_dir)
        except DataNotFoundError as err:
            if not skip_missing or len(skipped) + 1 == len(names):
                raise
            skipped[name] = str(err).splitlines()[0]
            continue
        if limit is not None:
            task = _limit_task(task, limit, seed)
        texts = task.distinct_texts()
        t1 = time.perf_counter()
        arr = _encode_checked(encode, texts).astype(np.float32)
        encode_s += time.perf_counter() - t1
        if not np.isfinite(arr).all():
            raise DataError(f"{name}: encode returned non-finite values (NaN or inf)")
        n_sent += len(texts)
        emb = dict(zip(texts, arr))
        t2 = time.perf_counter()
        # One BLAS thread: these fits are small and memory-bound, and L-BFGS's many tiny BLAS calls
        # slow down a lot with threads on a busy machine (measured: 4 ms per call at 8x load).
        with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
            warnings.simplefilter("always", ConvergenceWarning)
            score = _run_task(task, emb, kfold, seed)
        score.classifier_s = time.perf_counter() - t2
        clf_s += score.classifier_s
        score.n_sentences = len(texts)
        score.n_unconverged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        out[name] = score
    return TransferResults(out, elapsed_s=time.perf_counter() - t0, encode_s=encode_s, classifier_s=clf_s,
                           n_sentences=n_sent, seed=seed, kfold=kfold, limit=limit, skipped=skipped)
