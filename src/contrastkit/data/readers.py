"""Streaming readers that turn text, CSV, TSV, JSONL files and HF datasets into Examples.

Files are opened in binary and read one line at a time (``readline`` with a size limit),
so a file larger than memory can be streamed and a single runaway line cannot exhaust
memory. Every line is decoded as UTF-8 here, so a bad byte is reported with the file,
the line number and the byte offset in the file. Every problem with the data is a
:class:`~contrastkit.errors.DataError` whose message starts with ``path:line:``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from contrastkit.data.examples import Example, ReadStats
from contrastkit.errors import ConfigError, ContrastkitError, DataError

__all__ = [
    "DEFAULT_COLUMNS",
    "FORMATS",
    "KINDS",
    "MAX_LINE_BYTES",
    "OptionalDependencyError",
    "check_file",
    "iter_examples",
    "iter_hf_dataset",
    "infer_format",
    "iter_json_objects",
    "open_examples",
    "read_examples",
]

logger = logging.getLogger("contrastkit.data")

Format = Literal["text", "csv", "tsv", "jsonl"]
Kind = Literal["single", "pair", "triplet", "scored"]

FORMATS: tuple[str, ...] = ("text", "csv", "tsv", "jsonl")
KINDS: tuple[str, ...] = ("single", "pair", "triplet", "scored")
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "single": ("text",),
    "pair": ("anchor", "positive"),
    "triplet": ("anchor", "positive", "negative"),
    "scored": ("sentence1", "sentence2", "score"),
}
MAX_LINE_BYTES: int = 10 * 1024 * 1024
HF_PREFIX = "hf:"

_EXTENSIONS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 1024 * 1024


class OptionalDependencyError(ContrastkitError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


# --------------------------------------------------------------------------- arguments


@dataclass(frozen=True, slots=True)
class _Spec:
    """Validated reading arguments: the kind and the column names it reads."""

    kind: str
    columns: tuple[str, ...]

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Columns that hold texts (all but the score column for kind 'scored')."""
        return self.columns[:-1] if self.kind == "scored" else self.columns

    @property
    def score_column(self) -> str | None:
        """The column holding the score, or None when the kind has no score."""
        return self.columns[-1] if self.kind == "scored" else None


def _spec(kind: str, columns: Sequence[str] | None) -> _Spec:
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if columns is None:
        return _Spec(kind, DEFAULT_COLUMNS[kind])
    if isinstance(columns, (str, bytes)):
        raise ConfigError(f"columns must be a list of column names, not a single string ({columns!r})")
    cols = tuple(columns)
    for c in cols:
        if not isinstance(c, str) or not c:
            raise ConfigError(f"column names must be non-empty strings, found {c!r}")
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise ConfigError(f"columns {list(cols)} name {', '.join(map(repr, dupes))} more than once")
    wanted = {"single": "exactly 1", "pair": "exactly 2", "triplet": "at least 3", "scored": "exactly 3"}[kind]
    ok = {"single": len(cols) == 1, "pair": len(cols) == 2, "triplet": len(cols) >= 3, "scored": len(cols) == 3}[kind]
    if not ok:
        example = list(DEFAULT_COLUMNS[kind])
        raise ConfigError(
            f"kind {kind!r} needs {wanted} column names (for example {example}), found {len(cols)}: {list(cols)}"
        )
    return _Spec(kind, cols)


def infer_format(path: str) -> str:
    """The file format named by ``path``'s extension; a ConfigError lists the known ones."""
    ext = os.path.splitext(path)[1].lower()
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        known = ", ".join(f"{e}->{f}" for e, f in _EXTENSIONS.items())
        raise ConfigError(
            f"{path}: cannot infer the format from extension {ext!r} ({known}); "
            f"pass format= one of {', '.join(FORMATS)}"
        )
    return fmt


def check_file(path: str) -> None:
    """Raise DataError naming ``path`` when it is a directory or does not exist."""
    if os.path.isdir(path):
        raise DataError(
            "is a directory, expected a file (for a dataset saved with datasets' save_to_disk use 'hf:PATH')",
            path=path,
        )
    if not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (resolved to {os.path.abspath(path)})"
        raise DataError(f"file not found{where}", path=path)


# --------------------------------------------------------------------------- lines


def _rest_of_line_size(fh: BinaryIO) -> int:
    """Read (and discard) the rest of the current line in chunks; return its size without the newline."""
    size = 0
    while True:
        chunk = fh.readline(_SKIP_CHUNK)
        if not chunk:
            return size
        if chunk.endswith(b"\n"):
            return size + len(chunk) - (2 if chunk.endswith(b"\r\n") else 1)
        size += len(chunk)


def _iter_lines(fh: BinaryIO, path: str, max_line_bytes: int, stats: ReadStats) -> Iterator[tuple[int, str, int]]:
    """Yield (line number, decoded line with its terminator, raw size) for each physical line."""
    limit = max_line_bytes + 2  # room for the content plus "\r\n"
    offset = 0
    line_no = 0
    while True:
        raw = fh.readline(limit)
        if not raw:
            return
        line_no += 1
        stats.lines_read += 1
        ends = raw.endswith(b"\n")
        content = len(raw) - ((2 if raw.endswith(b"\r\n") else 1) if ends else 0)
        if content > max_line_bytes or (len(raw) == limit and not ends):
            size = content if ends else len(raw) + _rest_of_line_size(fh)
            raise DataError(
                f"line is {size:,} bytes long, more than the limit of {max_line_bytes:,} bytes "
                f"(max_line_bytes); is this really a line-based file?",
                path=path,
                line=line_no,
            )
        start = 3 if line_no == 1 and raw.startswith(_BOM) else 0
        try:
            text = raw[start:].decode("utf-8") if start else raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = e.object[e.start]
            raise DataError(
                f"invalid UTF-8 byte 0x{bad:02x} at byte offset {offset + start + e.start} "
                f"({e.reason}); the file must be UTF-8 encoded",
                path=path,
                line=line_no,
            ) from None
        offset += len(raw)
        yield line_no, text, len(raw)


def _strip_eol(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


# --------------------------------------------------------------------------- values


def _text_value(value: Any, column: str, path: str, line: int | None, prefix: str = "") -> str:
    if not isinstance(value, str):
        found = "null" if value is None else type(value).__name__
        raise DataError(
            f"{prefix}expected a string in column {column!r}, found {found} ({value!r})", path=path, line=line
        )
    if not value.strip():
        raise DataError(
            f"{prefix}empty text in column {column!r} (expected non-empty text, found {value!r})",
            path=path,
            line=line,
        )
    return value


def _score_value(value: Any, column: str, path: str, line: int | None, prefix: str = "") -> float:
    if isinstance(value, bool):
        number: float | None = None
    elif isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    else:
        number = None
    if number is None:
        raise DataError(
            f"{prefix}expected a number in score column {column!r}, found {value!r}", path=path, line=line
        )
    if not math.isfinite(number):
        raise DataError(
            f"{prefix}expected a finite number in score column {column!r}, found {value!r}", path=path, line=line
        )
    return number


def _example_from_mapping(
    row: Mapping[str, Any], spec: _Spec, path: str, line: int | None, what: str, prefix: str = ""
) -> Example:
    missing = [c for c in spec.columns if c not in row]
    if missing:
        raise DataError(
            f"{prefix}{what} lacks {'key' if len(missing) == 1 else 'keys'} {', '.join(map(repr, missing))}; "
            f"expected keys ({', '.join(spec.columns)}), found keys ({', '.join(map(str, row))})",
            path=path,
            line=line,
        )
    texts = tuple(_text_value(row[c], c, path, line, prefix) for c in spec.text_columns)
    score_col = spec.score_column
    score = _score_value(row[score_col], score_col, path, line, prefix) if score_col is not None else None
    return Example(texts, score)


# --------------------------------------------------------------------------- formats


def _read_text(lines: Iterator[tuple[int, str, int]], spec: _Spec, path: str, stats: ReadStats) -> Iterator[Example]:
    for _line_no, text, _size in lines:
        text = _strip_eol(text)
        if not text.strip():
            stats.skipped_blank += 1
            continue
        yield Example((text,))


def _json_object(text: str, path: str, line_no: int, keys: Sequence[str] = ()) -> dict[str, Any]:
    """Parse one JSONL line that must hold an object; the error names the file, line and what was found."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} at column {e.colno} (expected one JSON object per line)",
                        path=path, line=line_no) from None
    if not isinstance(obj, dict):
        found = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(obj), f"a number ({obj!r})"
        )
        with_keys = f" with keys ({', '.join(keys)})" if keys else ""
        raise DataError(f"expected a JSON object{with_keys}, found {found}", path=path, line=line_no)
    return obj


def _read_jsonl(lines: Iterator[tuple[int, str, int]], spec: _Spec, path: str, stats: ReadStats) -> Iterator[Example]:
    for line_no, text, _size in lines:
        if not text.strip():
            stats.skipped_blank += 1
            continue
        obj = _json_object(text, path, line_no, spec.columns)
        yield _example_from_mapping(obj, spec, path, line_no, "JSON object")


class _RecordTracker:
    """Feeds decoded lines to the csv module and remembers which lines the current record spans."""

    def __init__(self, lines: Iterator[tuple[int, str, int]], path: str, max_record_bytes: int) -> None:
        self._lines = lines
        self._path = path
        self._max = max_record_bytes
        self.start_line = 1
        self.end_line = 0
        self.last_text = ""
        self._bytes = 0

    def next_record(self) -> None:
        """Mark that the next line read starts a new record."""
        self.start_line = self.end_line + 1
        self._bytes = 0

    def __iter__(self) -> Iterator[str]:
        for line_no, text, size in self._lines:
            self.end_line = line_no
            self.last_text = text
            self._bytes += size
            if line_no > self.start_line and self._bytes > self._max:
                raise DataError(
                    f"record spans lines {self.start_line}-{line_no} and more than {self._max:,} bytes "
                    f"(max_line_bytes); is a quote left open in this row?",
                    path=self._path,
                    line=self.start_line,
                )
            yield text


def _read_delimited(
    lines: Iterator[tuple[int, str, int]],
    spec: _Spec,
    path: str,
    stats: ReadStats,
    delimiter: str,
    max_line_bytes: int,
) -> Iterator[Example]:
    if csv.field_size_limit() < max_line_bytes:
        csv.field_size_limit(max_line_bytes)  # a legitimate field may be as long as a line
    name = "CSV" if delimiter == "," else "TSV"
    tracker = _RecordTracker(lines, path, max_line_bytes)
    reader = csv.reader(tracker, delimiter=delimiter)
    header: list[str] | None = None
    indices: list[int] = []
    while True:
        tracker.next_record()
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"malformed {name} row: {e}", path=path, line=tracker.start_line) from None
        line = tracker.start_line
        if tracker.end_line == line and not tracker.last_text.strip():
            stats.skipped_blank += 1
            continue
        if header is None:
            header = [h.strip() for h in row]
            missing = [c for c in spec.columns if c not in header]
            if missing:
                raise DataError(
                    f"header lacks {'column' if len(missing) == 1 else 'columns'} "
                    f"{', '.join(map(repr, missing))}; expected columns ({', '.join(spec.columns)}), "
                    f"available columns ({', '.join(header)})",
                    path=path,
                    line=line,
                )
            dupes = [c for c in spec.columns if header.count(c) > 1]
            if dupes:
                raise DataError(
                    f"header names {', '.join(map(repr, dupes))} more than once; cannot tell which to read",
                    path=path,
                    line=line,
                )
            indices = [header.index(c) for c in spec.columns]
            continue
        if len(row) != len(header):
            raise DataError(
                f"expected {len(header)} columns ({', '.join(header)}), found {len(row)}",
                path=path,
                line=line,
            )
        texts = tuple(_text_value(row[i], c, path, line) for i, c in zip(indices, spec.text_columns))
        score = None
        if spec.score_column is not None:
            score = _score_value(row[indices[-1]], spec.score_column, path, line)
        yield Example(texts, score)


def _log_done(stats: ReadStats) -> None:
    level = logging.WARNING if stats.skipped_blank else logging.INFO
    logger.log(
        level,
        "read %d examples from %s (%d lines, %d blank lines skipped)",
        stats.examples,
        stats.source,
        stats.lines_read,
        stats.skipped_blank,
    )


def _open_binary(path: str) -> BinaryIO:
    """Open ``path`` for reading; an OSError (permissions, ...) becomes a DataError naming the file."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise DataError(f"cannot open file: {e.strerror or e}", path=path) from e


def _iter_file(path: str, fmt: str, spec: _Spec, stats: ReadStats, max_line_bytes: int) -> Iterator[Example]:
    stats.reset(path)
    fh = _open_binary(path)
    try:
        lines = _iter_lines(fh, path, max_line_bytes, stats)
        if fmt == "text":
            examples = _read_text(lines, spec, path, stats)
        elif fmt == "jsonl":
            examples = _read_jsonl(lines, spec, path, stats)
        else:
            examples = _read_delimited(lines, spec, path, stats, "," if fmt == "csv" else "\t", max_line_bytes)
        for example in examples:
            stats.examples += 1
            yield example
    finally:
        fh.close()
    if stats.examples == 0:
        if stats.lines_read == 0:
            detail = "the file has no lines"
        elif stats.lines_read == stats.skipped_blank:
            detail = f"all {stats.skipped_blank} lines are blank"
        elif fmt in ("csv", "tsv"):
            detail = f"only a header row ({stats.skipped_blank} blank lines skipped)"
        else:
            detail = f"{stats.skipped_blank} blank lines skipped"
        raise DataError(f"file is empty: no examples found ({detail})", path=path)
    _log_done(stats)


# --------------------------------------------------------------------------- public


def iter_examples(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    kind: Kind = "single",
    columns: Sequence[str] | None = None,
    stats: ReadStats | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Example]:
    """Stream Examples from a text/CSV/TSV/JSONL file line by line; arguments are checked at call time."""
    path = os.fspath(path)
    fmt = infer_format(path) if format is None else format
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    spec = _spec(kind, columns)
    if fmt == "text":
        if kind != "single":
            raise ConfigError(
                f"format 'text' holds one sentence per line and supports only kind='single', not {kind!r}"
            )
        if columns is not None:
            raise ConfigError("format 'text' has no columns; leave columns=None")
    if not isinstance(max_line_bytes, int) or max_line_bytes < 1:
        raise ConfigError(f"max_line_bytes must be a positive integer, found {max_line_bytes!r}")
    check_file(path)
    return _iter_file(path, fmt, spec, stats if stats is not None else ReadStats(), max_line_bytes)


def iter_json_objects(
    path: str | os.PathLike[str], *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream (line number, object) from a JSONL file, skipping blank lines; bad lines raise DataError."""
    path = os.fspath(path)
    check_file(path)
    with _open_binary(path) as fh:
        for line_no, text, _size in _iter_lines(fh, path, max_line_bytes, ReadStats()):
            if text.strip():
                yield line_no, _json_object(text, path, line_no)


def read_examples(
    path: str | os.PathLike[str],
    *,
    format: Format | None = None,
    kind: Kind = "single",
    columns: Sequence[str] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> tuple[list[Example], ReadStats]:
    """Read a whole file into a list of Examples and return it with the reading statistics."""
    stats = ReadStats()
    examples = list(
        iter_examples(path, format=format, kind=kind, columns=columns, stats=stats, max_line_bytes=max_line_bytes)
    )
    return examples, stats


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as e:
        raise OptionalDependencyError(
            "reading Hugging Face datasets needs the 'datasets' package: install contrastkit[datasets] "
            "(pip install 'contrastkit[datasets]')"
        ) from e
    return datasets


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json", "dataset_info.json")
    )


def _load_hf(datasets: Any, name_or_path: str, split: str, streaming: bool, where: str, kwargs: dict[str, Any]) -> Any:
    if _is_saved_dataset(name_or_path):
        try:
            ds = datasets.load_from_disk(name_or_path, **kwargs)
        except Exception as e:  # datasets raises many types; report them uniformly
            raise DataError(f"cannot load dataset saved on disk: {type(e).__name__}: {e}", path=where) from e
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"split {split!r} not found; available splits ({', '.join(ds)})", path=where)
            ds = ds[split]
        return ds.to_iterable_dataset() if streaming else ds
    try:
        return datasets.load_dataset(name_or_path, split=split, streaming=streaming, **kwargs)
    except Exception as e:  # datasets raises many types; report them uniformly
        raise DataError(f"cannot load dataset: {type(e).__name__}: {e}", path=where) from e


def _iter_hf_rows(ds: Any, spec: _Spec, where: str, stats: ReadStats) -> Iterator[Example]:
    stats.reset(where)
    for i, row in enumerate(ds):
        stats.lines_read += 1
        if not isinstance(row, Mapping):
            raise DataError(
                f"row {i}: expected a mapping of column names to values, found {type(row).__name__}", path=where
            )
        example = _example_from_mapping(row, spec, where, None, "row", prefix=f"row {i}: ")
        stats.examples += 1
        yield example
    if stats.examples == 0:
        raise DataError("dataset is empty: no examples found (0 rows)", path=where)
    _log_done(stats)


def iter_hf_dataset(
    name_or_path: str,
    *,
    split: str = "train",
    kind: Kind = "single",
    columns: Sequence[str] | None = None,
    streaming: bool = True,
    stats: ReadStats | None = None,
    **kwargs: Any,
) -> Iterator[Example]:
    """Stream Examples from a Hugging Face dataset (hub name, loader name or save_to_disk folder)."""
    spec = _spec(kind, columns)
    datasets = _import_datasets()
    where = f"hf:{name_or_path}[{split}]"
    ds = _load_hf(datasets, name_or_path, split, streaming, where, kwargs)
    names = getattr(ds, "column_names", None)
    if names is not None:
        missing = [c for c in spec.columns if c not in names]
        if missing:
            raise DataError(
                f"dataset lacks {'column' if len(missing) == 1 else 'columns'} {', '.join(map(repr, missing))}; "
                f"expected columns ({', '.join(spec.columns)}), available columns ({', '.join(names)})",
                path=where,
            )
    return _iter_hf_rows(ds, spec, where, stats if stats is not None else ReadStats())


def open_examples(
    source: str | os.PathLike[str],
    *,
    format: Format | None = None,
    kind: Kind = "single",
    columns: Sequence[str] | None = None,
    split: str = "train",
    stats: ReadStats | None = None,
) -> Iterator[Example]:
    """Stream Examples from a local file path or from 'hf:NAME' (a Hugging Face dataset)."""
    src = os.fspath(source)
    if src.startswith(HF_PREFIX):
        if format is not None:
            raise ConfigError(f"format= applies to local files only, not to {src!r}")
        name = src[len(HF_PREFIX):]
        if not name:
            raise ConfigError("'hf:' must be followed by a dataset name or a save_to_disk folder, e.g. 'hf:user/data'")
        return iter_hf_dataset(name, split=split, kind=kind, columns=columns, stats=stats)
    return iter_examples(src, format=format, kind=kind, columns=columns, stats=stats)
