"""Reading STS benchmark data exactly as SentEval (and so SimCSE's evaluation) reads it.

SentEval's loaders (``senteval/sts.py`` in SimCSE's copy of SentEval) turn every
sentence into ``s.split()`` tokens and SimCSE's batcher joins them back with single
spaces, so the text that reaches the encoder is ``" ".join(s.split())``.  SentEval
does not lower-case: its downloaded data is already lower-cased and tokenized.

* STS12-16: ``STS.input.<set>.txt`` (``read().splitlines()``, ``line.split("\\t")``)
  and ``STS.gs.<set>.txt``; a pair whose gold line is empty is unscored and dropped.
* STS-B: ``sts-{train,dev,test}.csv``; ``line.strip().split("\\t")``, score in field
  5, sentences in fields 6 and 7 (1-based), no quote handling.
* SICK-R: ``SICK_{train,trial,test_annotated}.txt``; header skipped, sentences in
  fields 2 and 3, relatedness in field 4 (1-based).
* STS-B "original" (MTEB's text): ``stsbenchmark-original/sts-*.csv``, same field
  layout (some lines carry two extra source columns), text kept as written.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contrastkit.errors import ContrastkitError, DataError

__all__ = [
    "DATA_ENV_VAR",
    "DATA_SEARCH_ORDER",
    "DataNotFoundError",
    "STSTask",
    "STS_TASK_NAMES",
    "STS_YEAR_SUBSETS",
    "candidate_data_dirs",
    "load_sts_task",
    "resolve_senteval_dir",
]

DATA_ENV_VAR = "CONTRASTKIT_DATA"
"""Environment variable naming the data root (the folder holding ``senteval/``)."""

DATA_SEARCH_ORDER = (
    f"--data-dir DIR if given, else ${DATA_ENV_VAR}, else ../shared/data beside the contrastkit checkout "
    "or the current directory, else ~/.cache/contrastkit/data"
)
"""Where benchmark data is looked for, in words (shared by ``--help`` and the not-found message)."""

STS_YEAR_SUBSETS: dict[str, tuple[str, ...]] = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    # SentEval's STS13 has no "SMT" subset (licence).
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
"""Subsets of each STS year, in SentEval's order."""

# name -> (relative file, kind); kind picks the reader.
_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "STSBenchmark": ("STS/STSBenchmark/sts-test.csv", "stsb"),
    "STSBenchmark-dev": ("STS/STSBenchmark/sts-dev.csv", "stsb"),
    "STSBenchmark-train": ("STS/STSBenchmark/sts-train.csv", "stsb"),
    "STSBenchmark-original": ("stsbenchmark-original/sts-test.csv", "stsb-original"),
    "STSBenchmark-original-dev": ("stsbenchmark-original/sts-dev.csv", "stsb-original"),
    "SICKRelatedness": ("SICK/SICK_test_annotated.txt", "sick"),
    "SICKRelatedness-dev": ("SICK/SICK_trial.txt", "sick"),
    "SICKRelatedness-train": ("SICK/SICK_train.txt", "sick"),
}

STS_TASK_NAMES: tuple[str, ...] = tuple(STS_YEAR_SUBSETS) + tuple(_SPLIT_FILES)
"""Every task name :func:`load_sts_task` accepts."""

# Public fallback: MTEB's copies on the Hugging Face hub (original text, not SentEval's
# lower-cased tokenized text; SICK-R there is all 9,927 pairs, not SentEval's test split).
_HUB_SOURCES: dict[str, tuple[str, str]] = {
    "STS12": ("mteb/sts12-sts", "test"),
    "STS13": ("mteb/sts13-sts", "test"),
    "STS14": ("mteb/sts14-sts", "test"),
    "STS15": ("mteb/sts15-sts", "test"),
    "STS16": ("mteb/sts16-sts", "test"),
    "STSBenchmark": ("mteb/stsbenchmark-sts", "test"),
    "STSBenchmark-dev": ("mteb/stsbenchmark-sts", "validation"),
    "STSBenchmark-train": ("mteb/stsbenchmark-sts", "train"),
    "STSBenchmark-original": ("mteb/stsbenchmark-sts", "test"),
    "STSBenchmark-original-dev": ("mteb/stsbenchmark-sts", "validation"),
    "SICKRelatedness": ("mteb/sickr-sts", "test"),
}


class DataNotFoundError(ContrastkitError, FileNotFoundError):
    """Benchmark data is not on disk (and no public fallback could provide it)."""

    def __init__(self, message: str, *, searched: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.searched = list(searched)


@dataclass
class STSTask:
    """One STS evaluation set: sentence pairs, gold scores and the subset of each pair."""

    name: str
    pairs: list[tuple[str, str]]
    scores: np.ndarray
    groups: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if not (len(self.pairs) == len(self.scores) == len(self.groups)):
            raise ValueError(
                f"STSTask {self.name!r}: {len(self.pairs)} pairs, {len(self.scores)} scores "
                f"and {len(self.groups)} groups differ in length"
            )

    def __len__(self) -> int:
        """Number of scored pairs."""
        return len(self.pairs)

    @property
    def subsets(self) -> list[str]:
        """Distinct subset names in order of first appearance."""
        return list(dict.fromkeys(self.groups))


def _senteval_text(sentence: str) -> str:
    """Text SimCSE's batcher builds from SentEval's tokens: ``" ".join(s.split())``."""
    return " ".join(sentence.split())


# ----------------------------------------------------------------------------- paths
def _repo_roots() -> list[Path]:
    """Candidate project roots: the source checkout holding this file, then the cwd."""
    roots: list[Path] = []
    here = Path(__file__).resolve()
    # src/contrastkit/evaluation/senteval.py -> repository root is parents[3]
    if len(here.parents) > 3 and (here.parents[3] / "pyproject.toml").is_file():
        roots.append(here.parents[3])
    cwd = Path.cwd().resolve()
    if cwd not in roots:
        roots.append(cwd)
    return roots


def candidate_data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Data roots tried in order: argument, ``$CONTRASTKIT_DATA``, ``<repo>/../shared/data``, cache."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out: list[Path] = []
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        out.append(Path(env).expanduser())
    for root in _repo_roots():
        shared = root.parent / "shared" / "data"
        if shared.is_dir() and shared not in out:
            out.append(shared)
    out.append(Path.home() / ".cache" / "contrastkit" / "data")
    return out


def _as_senteval_root(base: Path) -> Path | None:
    """The SentEval ``downstream`` folder at or below ``base`` (``STS/`` or ``SICK/`` inside)."""
    for cand in (base, base / "senteval", base / "downstream", base / "data" / "downstream"):
        if (cand / "STS").is_dir() or (cand / "SICK").is_dir() or (
            cand / "stsbenchmark-original"
        ).is_dir():
            return cand
    return None


def _missing_message(what: str, searched: Sequence[Path], hub_note: str | None, kind: str = "STS") -> str:
    """Explain where ``kind`` data was looked for and how to provide it."""
    tried = "\n".join(f"  - {p}" for p in searched) or "  (nothing)"
    hub = ("" if hub_note is None else
           "\nHugging Face hub fallback (MTEB copies such as mteb/stsbenchmark-sts, "
           f"mteb/sickr-sts, mteb/sts12-sts): {hub_note}")
    return (
        f"{kind} data not found: {what}.\nLooked in:\n{tried}\n"
        f"Data is looked for at: {DATA_SEARCH_ORDER}. Provide it with --data-dir DIR "
        f"(in a training config: eval.data_dir; in Python: data_dir=...) or by setting {DATA_ENV_VAR}, "
        "naming a folder that holds SentEval's downstream layout (STS/, SICK/, stsbenchmark-original/), "
        "directly or under 'senteval/'. SentEval's data/downstream/get_transfer_data.bash "
        f"downloads it (https://github.com/facebookresearch/SentEval).{hub}"
    )


def resolve_senteval_dir(data_dir: str | os.PathLike[str] | None = None, *, needed_for: str = "STS") -> Path:
    """Locate the SentEval ``downstream`` folder, or raise :class:`DataNotFoundError` naming ``needed_for``."""
    searched = candidate_data_dirs(data_dir)
    for base in searched:
        root = _as_senteval_root(base)
        if root is not None:
            return root
    raise DataNotFoundError(
        _missing_message("no SentEval folder", searched, "not tried" if needed_for == "STS" else None,
                         kind=needed_for), searched=searched
    )


# ----------------------------------------------------------------------------- readers
def _read_lines(path: Path) -> list[str]:
    """SentEval's ``io.open(path, encoding='utf8').read().splitlines()``."""
    with io.open(path, encoding="utf8") as fh:
        return fh.read().splitlines()


def _load_sts_year(name: str, folder: Path) -> STSTask:
    """One STS12-16 year: all subsets, unscored (empty gold) pairs dropped."""
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    groups: list[str] = []
    for subset in STS_YEAR_SUBSETS[name]:
        inp = folder / f"STS.input.{subset}.txt"
        gs = folder / f"STS.gs.{subset}.txt"
        for p in (inp, gs):
            if not p.is_file():
                raise DataNotFoundError(
                    _missing_message(f"{name} needs {p}", [p], "not tried"), searched=[p]
                )
        lines = _read_lines(inp)
        gold = _read_lines(gs)
        if len(lines) != len(gold):
            raise DataError(
                f"{len(lines)} sentence pairs but {len(gold)} gold lines in {gs.name}",
                path=str(inp),
            )
        for i, (line, g) in enumerate(zip(lines, gold), start=1):
            if g.strip() == "":  # SentEval keeps pairs whose gold line is not ''.
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise DataError("expected two tab-separated sentences", path=str(inp), line=i)
            try:
                score = float(g)
            except ValueError:
                raise DataError(f"gold score {g!r} is not a number", path=str(gs), line=i) from None
            pairs.append((_senteval_text(fields[0]), _senteval_text(fields[1])))
            scores.append(score)
            groups.append(subset)
    return STSTask(name, pairs, np.asarray(scores), groups, source=str(folder))


def _load_split_file(name: str, path: Path, kind: str) -> STSTask:
    """STS-B / SICK-R split files, read line by line like SentEval's ``loadFile``."""
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    if kind == "sick":
        col_a, col_b, col_y, skip_header = 1, 2, 3, True
    else:
        col_a, col_b, col_y, skip_header = 5, 6, 4, False
    with io.open(path, "r", encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if (skip_header and i == 1) or not line.strip():
                continue
            if kind == "stsb-original":
                # MTEB's text: keep the sentences as written (only the line end goes).
                fields = line.rstrip("\r\n").split("\t")
            else:
                fields = line.strip().split("\t")
            if len(fields) <= max(col_a, col_b, col_y):
                raise DataError(
                    f"expected at least {max(col_a, col_b, col_y) + 1} tab-separated fields, "
                    f"got {len(fields)}",
                    path=str(path),
                    line=i,
                )
            try:
                score = float(fields[col_y])
            except ValueError:
                raise DataError(
                    f"score {fields[col_y]!r} is not a number", path=str(path), line=i
                ) from None
            if kind == "stsb-original":
                a, b = fields[col_a].strip(), fields[col_b].strip()
            else:
                a, b = _senteval_text(fields[col_a]), _senteval_text(fields[col_b])
            pairs.append((a, b))
            scores.append(score)
    split = path.stem
    return STSTask(name, pairs, np.asarray(scores), [split] * len(pairs), source=str(path))


# ----------------------------------------------------------------------------- hub
def _hub_allowed(hub: bool | None) -> tuple[bool, str]:
    """Whether the hub fallback may run, and why not when it may not."""
    if hub is False:
        return False, "disabled (hub=False)"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            if hub is None:
                return False, f"skipped ({var} is set)"
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False, "unavailable (install the 'datasets' package: pip install contrastkit[datasets])"
    return True, ""


def _load_from_hub(name: str) -> STSTask:
    """Load MTEB's copy of a task from the Hugging Face hub (original text)."""
    import datasets

    repo, split = _HUB_SOURCES[name]
    ds = datasets.load_dataset(repo, split=split)
    s1, s2, sc = ds["sentence1"], ds["sentence2"], ds["score"]
    keep = name == "STSBenchmark-original" or name == "STSBenchmark-original-dev"
    pairs = [(a, b) if keep else (_senteval_text(a), _senteval_text(b)) for a, b in zip(s1, s2)]
    notes = [f"loaded from the Hugging Face hub ({repo}, split {split}): MTEB text"]
    if not keep:
        notes.append("not SentEval's lower-cased tokenized text: scores differ slightly")
    if name == "SICKRelatedness":
        notes.append("MTEB's SICK-R is all 9,927 pairs, not SentEval's 4,927-pair test split")
    return STSTask(
        name,
        pairs,
        np.asarray(sc, dtype=np.float64),
        [split] * len(pairs),
        source=f"hf-hub:{repo}[{split}]",
        notes=notes,
    )


# ----------------------------------------------------------------------------- public
def load_sts_task(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, hub: bool | None = None
) -> STSTask:
    """Load one STS task (see ``STS_TASK_NAMES``) from SentEval's layout, or the hub fallback.

    ``hub=None`` tries MTEB's copies on the Hugging Face hub only when the local data is
    missing, ``datasets`` is installed and no ``HF_*_OFFLINE`` variable is set;
    ``hub=False`` never tries it; ``hub=True`` tries it even with offline variables set.
    """
    if name not in STS_TASK_NAMES:
        raise ValueError(f"unknown STS task {name!r}; expected one of {', '.join(STS_TASK_NAMES)}")
    searched = candidate_data_dirs(data_dir)
    tried: list[Path] = []
    for base in searched:
        root = _as_senteval_root(base)
        if name in STS_YEAR_SUBSETS:
            target = None if root is None else root / "STS" / f"{name}-en-test"
            if target is not None and target.is_dir():
                return _load_sts_year(name, target)
        else:
            rel, kind = _SPLIT_FILES[name]
            target = None if root is None else root / rel
            if target is not None and target.is_file():
                return _load_split_file(name, target, kind)
        tried.append(target if target is not None else base)

    ok, why = _hub_allowed(hub)
    if ok and name in _HUB_SOURCES:
        try:
            return _load_from_hub(name)
        except Exception as exc:  # network down, dataset moved...: report, don't mask
            why = f"failed ({type(exc).__name__}: {exc})"
    elif ok:
        why = "no public copy of this split"
    raise DataNotFoundError(_missing_message(f"task {name}", tried, why), searched=tried)


@functools.lru_cache(maxsize=32)
def _load_cached(name: str, resolved: str | None) -> STSTask:
    """Cached :func:`load_sts_task` for repeated dev evaluations during training."""
    return load_sts_task(name, resolved)
