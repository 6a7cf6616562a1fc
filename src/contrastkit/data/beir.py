"""Load a retrieval task stored in the BEIR layout.

A BEIR dataset folder holds::

    corpus.jsonl        one JSON object a line: {"_id": ..., "title": ..., "text": ...}
    queries.jsonl       one JSON object a line: {"_id": ..., "text": ...}
    qrels/<split>.tsv   tab-separated, header "query-id  corpus-id  score", one judgement a line

Rules (each problem is a :class:`~contrastkit.errors.DataError` whose message starts
with ``path:line:``, or ``path:`` for a missing file):

* ``_id`` is required on every corpus and query line and must be unique; ids are kept as
  strings (a numeric ``_id`` such as ``12`` becomes ``"12"``, as in BEIR). Blank lines are skipped.
* ``title`` and ``text`` are optional strings (missing or null means ``""``). The document
  text is ``title + " " + text`` when the title is non-empty, else ``text`` (BEIR practice).
* The qrels header is skipped when the first line starts with ``query-id``; otherwise the
  first line is read as data. Each line needs at least three tab-separated fields (extra
  ones are ignored) and an integer score. A repeated (query, document) pair is an error.
  Scores ``<= 0`` are kept (they are judged non-relevant; metrics ignore them).
* Judgements that name a query or document missing from ``queries.jsonl``/``corpus.jsonl``:
  with ``on_unknown="warn"`` (default) they are dropped, counted in
  :attr:`RetrievalTask.n_dropped_qrels` and reported in one :class:`UserWarning` giving the
  count and the first offending line; with ``on_unknown="error"`` the first one raises.
  (Some public BEIR splits reference a handful of ids absent from the corpus, so dropping
  with a warning is the default; ``"error"`` is for data you produced yourself.)
* As in BEIR's ``GenericDataLoader``, only queries that have a judgement in the split are
  kept, in ``queries.jsonl`` order. The whole corpus is kept, in file order (this order is
  the tie-breaking order of :func:`contrastkit.evaluation.retrieval.search`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contrastkit.data.readers import iter_json_objects
from contrastkit.errors import DataError

__all__ = ["RetrievalTask", "load_beir"]

OnUnknown = Literal["warn", "error"]


@dataclass
class RetrievalTask:
    """A retrieval benchmark: a corpus, queries and graded relevance judgements (qrels)."""

    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    name: str = ""
    n_dropped_qrels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.corpus_ids) != len(self.corpus_texts):
            raise ValueError(f"{len(self.corpus_ids)} corpus ids but {len(self.corpus_texts)} texts")
        if len(self.query_ids) != len(self.query_texts):
            raise ValueError(f"{len(self.query_ids)} query ids but {len(self.query_texts)} texts")
        for what, ids in (("corpus", self.corpus_ids), ("query", self.query_ids)):
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate {what} ids")

    def __len__(self) -> int:
        return len(self.query_ids)


def _get_id(obj: dict[str, Any], path: Path, lineno: int) -> str:
    if "_id" not in obj:
        raise DataError('missing "_id"', path=str(path), line=lineno)
    raw = obj["_id"]
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise DataError(f'"_id" must be a string or an integer, got {type(raw).__name__}', path=str(path),
                        line=lineno)
    sid = str(raw)
    if not sid:
        raise DataError('empty "_id"', path=str(path), line=lineno)
    return sid


def _get_str(obj: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise DataError(f'"{key}" must be a string, got {type(v).__name__}', path=str(path), line=lineno)
    return v


def _read_records(path: Path, *, with_title: bool) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_json_objects(path):
        sid = _get_id(obj, path, lineno)
        if sid in seen:
            raise DataError(f'duplicate "_id" {sid!r} (first on line {seen[sid]})', path=str(path), line=lineno)
        seen[sid] = lineno
        text = _get_str(obj, "text", path, lineno)
        if with_title:
            title = _get_str(obj, "title", path, lineno)
            text = f"{title} {text}" if title.strip() else text
        ids.append(sid)
        texts.append(text)
    return ids, texts


def _read_qrels(path: Path, query_set: set[str], doc_set: set[str],
                on_unknown: OnUnknown) -> tuple[dict[str, dict[str, int]], int]:
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    qrels: dict[str, dict[str, int]] = {}
    dropped = 0
    first_drop = ""
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if lineno == 1 and fields[0].strip().lower() == "query-id":
                continue  # the header
            if len(fields) < 3:
                raise DataError(f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}",
                                path=str(path), line=lineno)
            qid, did, raw = fields[0].strip(), fields[1].strip(), fields[2].strip()
            try:
                score = int(raw)
            except ValueError:
                try:
                    fscore = float(raw)
                except ValueError:
                    fscore = float("nan")
                if not fscore.is_integer():
                    raise DataError(f"score must be an integer, got {raw!r}", path=str(path), line=lineno) from None
                score = int(fscore)
            if not qid or not did:
                raise DataError("empty query-id or corpus-id", path=str(path), line=lineno)
            missing = [f"query {qid!r}"] if qid not in query_set else []
            if did not in doc_set:
                missing.append(f"document {did!r}")
            if missing:
                msg = f"unknown {' and '.join(missing)}"
                if on_unknown == "error":
                    raise DataError(msg, path=str(path), line=lineno)
                dropped += 1
                first_drop = first_drop or f"{path}:{lineno}: {msg}"
                continue
            per_q = qrels.setdefault(qid, {})
            if did in per_q:
                raise DataError(f"duplicate judgement for ({qid!r}, {did!r})", path=str(path), line=lineno)
            per_q[did] = score
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} judgement(s) naming unknown queries or documents; "
                      f"first: {first_drop}", UserWarning, stacklevel=3)
    return qrels, dropped


def load_beir(folder: str | os.PathLike[str], split: str = "test", *,
              on_unknown: OnUnknown = "warn") -> RetrievalTask:
    """Read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` from a BEIR folder into a RetrievalTask."""
    if on_unknown not in ("warn", "error"):
        raise ValueError(f"on_unknown must be 'warn' or 'error', got {on_unknown!r}")
    root = Path(folder)
    if not root.is_dir():
        raise DataError("BEIR dataset folder not found", path=str(root))
    corpus_ids, corpus_texts = _read_records(root / "corpus.jsonl", with_title=True)
    query_ids_all, query_texts_all = _read_records(root / "queries.jsonl", with_title=False)
    qrels, dropped = _read_qrels(root / "qrels" / f"{split}.tsv", set(query_ids_all), set(corpus_ids),
                                 on_unknown)
    keep = [i for i, q in enumerate(query_ids_all) if q in qrels]
    return RetrievalTask(
        corpus_ids=corpus_ids,
        corpus_texts=corpus_texts,
        query_ids=[query_ids_all[i] for i in keep],
        query_texts=[query_texts_all[i] for i in keep],
        qrels=qrels,
        name=f"{root.name}/{split}",
        n_dropped_qrels=dropped,
    )
