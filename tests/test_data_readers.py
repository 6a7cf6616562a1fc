"""Tests for contrastkit.data: file readers (text, CSV, TSV, JSONL) and Hugging Face datasets."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# The machine is offline: never let `datasets` try the hub.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from contrastkit.data import (
    Example,
    OptionalDependencyError,
    ReadStats,
    iter_examples,
    iter_hf_dataset,
    open_examples,
    read_examples,
)
from contrastkit.errors import ConfigError, ContrastkitError, DataError

# --------------------------------------------------------------------------- helpers

ROWS: dict[str, list[dict[str, Any]]] = {
    "single": [{"text": "the cat sat"}, {"text": "a dog, barking"}],
    "pair": [
        {"anchor": "what is a cat?", "positive": "a small feline"},
        {"anchor": 'say "hi"', "positive": "greeting, friendly"},
    ],
    "triplet": [
        {"anchor": "q1", "positive": "p1", "negative": "n1"},
        {"anchor": "q2", "positive": "p2", "negative": "n2"},
    ],
    "scored": [
        {"sentence1": "a man eats", "sentence2": "a person eats", "score": 4.5},
        {"sentence1": "sun", "sentence2": "moon", "score": 0},
    ],
}
COLUMNS = {
    "single": ["text"],
    "pair": ["anchor", "positive"],
    "triplet": ["anchor", "positive", "negative"],
    "scored": ["sentence1", "sentence2", "score"],
}


def expected(kind: str) -> list[Example]:
    """The Examples that ROWS[kind] should produce."""
    cols = COLUMNS[kind]
    if kind == "scored":
        return [Example((r[cols[0]], r[cols[1]]), float(r[cols[2]])) for r in ROWS[kind]]
    return [Example(tuple(r[c] for c in cols)) for r in ROWS[kind]]


def write_delimited(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",") -> Path:
    """Write a header and rows with the csv module (so quoting is standard) and return the path."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_format(tmp_path: Path, fmt: str, kind: str) -> Path:
    """Write ROWS[kind] as a csv, tsv or jsonl file with the default column names."""
    cols = COLUMNS[kind]
    rows = ROWS[kind]
    if fmt == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    delimiter = "," if fmt == "csv" else "\t"
    return write_delimited(tmp_path / f"data.{fmt}", cols, [[r[c] for c in cols] for r in rows], delimiter)


def raises_data_error(func: Any, *args: Any, **kwargs: Any) -> str:
    """Call func (materialising an iterator) and return the DataError message."""
    with pytest.raises(DataError) as info:
        result = func(*args, **kwargs)
        if not isinstance(result, tuple):
            list(result)
    return str(info.value)


# --------------------------------------------------------------------------- happy paths


def test_text_format_one_sentence_per_line(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("first sentence\nsecond, with comma\n  third keeps spaces \n", encoding="utf-8")
    examples, stats = read_examples(path)
    assert examples == [
        Example(("first sentence",)),
        Example(("second, with comma",)),
        Example(("  third keeps spaces ",)),
    ]
    assert (stats.lines_read, stats.examples, stats.skipped_blank) == (3, 3, 0)
    assert stats.source == str(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("kind", ["single", "pair", "triplet", "scored"])
def test_format_kind_happy_path(tmp_path: Path, fmt: str, kind: str) -> None:
    path = write_format(tmp_path, fmt, kind)
    examples, stats = read_examples(path, kind=kind)  # default columns, format from extension
    assert examples == expected(kind)
    assert stats.examples == 2
    # the same with explicit format and columns
    assert list(iter_examples(path, format=fmt, kind=kind, columns=COLUMNS[kind])) == expected(kind)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_triplet_with_several_negatives_and_custom_names(tmp_path: Path, fmt: str) -> None:
    cols = ["query", "pos", "neg_a", "neg_b"]
    rows = [["q", "p", "na", "nb"], ["q2", "p2", "na2", "nb2"]]
    if fmt == "csv":
        path = write_delimited(tmp_path / "t.csv", ["id", *cols], [[i, *r] for i, r in enumerate(rows)])
    else:
        path = tmp_path / "t.jsonl"
        path.write_text("".join(json.dumps(dict(zip(cols, r)) | {"id": 1}) + "\n" for r in rows), encoding="utf-8")
    examples, _ = read_examples(path, kind="triplet", columns=cols)
    assert examples == [Example(("q", "p", "na", "nb")), Example(("q2", "p2", "na2", "nb2"))]


def test_csv_column_order_and_extra_columns(tmp_path: Path) -> None:
    path = write_delimited(tmp_path / "x.csv", ["score", "id", "sentence2", "sentence1"], [["0.5", "7", "b", "a"]])
    examples, _ = read_examples(path, kind="scored")
    assert examples == [Example(("a", "b"), 0.5)]


def test_csv_quoting_and_multiline_fields_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    content = 'anchor,positive\n"a, b","line one\nline two"\n"say ""hi""",ok\nonly_one_column\n'
    path.write_text(content, encoding="utf-8")
    it = iter_examples(path, kind="pair")
    assert next(it) == Example(("a, b", "line one\nline two"))
    assert next(it) == Example(('say "hi"', "ok"))
    with pytest.raises(DataError) as info:
        next(it)
    # header is line 1, the two-line record lines 2-3, then line 4, so the bad row is line 5
    assert f"{path}:5: expected 2 columns (anchor, positive), found 1" in str(info.value)


def test_tsv_allows_commas_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_bytes(b"anchor\tpositive\r\nhello, world\thi there\r\n")
    examples, _ = read_examples(path, kind="pair")
    assert examples == [Example(("hello, world", "hi there"))]


def test_text_crlf(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"one\r\ntwo\r\n")
    assert read_examples(path)[0] == [Example(("one",)), Example(("two",))]


def test_jsonl_score_as_numeric_string_and_json_extension(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"sentence1": "a", "sentence2": "b", "score": "3.25"}\n', encoding="utf-8")
    assert read_examples(path, kind="scored")[0] == [Example(("a", "b"), 3.25)]


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.dat"
    path.write_text("text\nhello\n", encoding="utf-8")
    assert read_examples(path, format="csv")[0] == [Example(("hello",))]


# --------------------------------------------------------------------------- blanks, BOM, stats, logging


@pytest.mark.parametrize(
    ("name", "content", "kind", "n_examples", "n_blank", "n_lines"),
    [
        ("b.txt", "a\n\n   \nb\n\t\n", "single", 2, 3, 5),
        ("b.csv", "\nanchor,positive\nx,y\n \n\nz,w\n", "pair", 2, 3, 6),
        ("b.tsv", "anchor\tpositive\n\nx\ty\n", "pair", 1, 1, 3),
        ("b.jsonl", '{"text": "a"}\n\n  \n{"text": "b"}\n\n', "single", 2, 3, 5),
    ],
)
def test_blank_lines_are_skipped_and_counted(
    tmp_path: Path, name: str, content: str, kind: str, n_examples: int, n_blank: int, n_lines: int
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    examples, stats = read_examples(path, kind=kind)
    assert len(examples) == n_examples
    assert (stats.examples, stats.skipped_blank, stats.lines_read) == (n_examples, n_blank, n_lines)


def test_stats_object_is_filled_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("a\n\nb\n", encoding="utf-8")
    stats = ReadStats(source="stale", lines_read=99)
    it = iter_examples(path, stats=stats)
    assert next(it) == Example(("a",))
    assert stats.examples == 1 and stats.lines_read == 1 and stats.source == str(path)
    assert list(it) == [Example(("b",))]
    assert (stats.lines_read, stats.examples, stats.skipped_blank) == (3, 2, 1)


def test_completion_is_logged_with_blank_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "l.txt"
    path.write_text("a\n\n\nb\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="contrastkit.data"):
        read_examples(path)
    (record,) = [r for r in caplog.records if r.name == "contrastkit.data"]
    assert record.levelno == logging.WARNING
    assert "2 blank lines skipped" in record.getMessage() and str(path) in record.getMessage()

    clean = tmp_path / "clean.txt"
    clean.write_text("a\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="contrastkit.data"):
        read_examples(clean)
    (record,) = [r for r in caplog.records if r.name == "contrastkit.data"]
    assert record.levelno == logging.INFO and "read 1 examples" in record.getMessage()


@pytest.mark.parametrize(
    ("name", "body", "kind", "want"),
    [
        ("bom.txt", "hello\nworld\n", "single", [Example(("hello",)), Example(("world",))]),
        ("bom.csv", "anchor,positive\nx,y\n", "pair", [Example(("x", "y"))]),
        ("bom.tsv", "text\nhello\n", "single", [Example(("hello",))]),
        ("bom.jsonl", '{"text": "hello"}\n', "single", [Example(("hello",))]),
    ],
)
def test_utf8_bom_is_removed(tmp_path: Path, name: str, body: str, kind: str, want: list[Example]) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert read_examples(path, kind=kind)[0] == want


def test_non_ascii_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text('{"text": "naïve café ☕ 日本"}\n', encoding="utf-8")
    assert read_examples(path)[0] == [Example(("naïve café ☕ 日本",))]


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        iter_examples(path)  # raised at call time, before iterating
    assert str(info.value) == f"{path}: file not found"
    assert info.value.path == str(path)


def test_missing_relative_file_shows_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    msg = raises_data_error(read_examples, "rel.txt")
    assert msg.startswith("rel.txt: file not found") and str(tmp_path / "rel.txt") in msg


def test_directory_instead_of_file(tmp_path: Path) -> None:
    d = tmp_path / "dir.jsonl"
    d.mkdir()
    msg = raises_data_error(read_examples, d)
    assert msg.startswith(f"{d}: is a directory, expected a file")


def test_wrong_column_count(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("anchor,positive,negative\na,b,c\na,b\n", encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="triplet")
    assert msg == f"{path}:3: expected 3 columns (anchor, positive, negative), found 2"


def test_too_many_columns_tsv(tmp_path: Path) -> None:
    path = tmp_path / "w.tsv"
    path.write_text("text\nok\na\tb\n", encoding="utf-8")
    msg = raises_data_error(read_examples, path)
    assert msg == f"{path}:3: expected 1 columns (text), found 2"


def test_unknown_column_in_header_lists_available(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("\nquery,pos\na,b\n", encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="pair")
    assert msg.startswith(f"{path}:2: header lacks columns 'anchor', 'positive'")
    assert "expected columns (anchor, positive)" in msg and "available columns (query, pos)" in msg


def test_jsonl_object_lacks_key(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a", "pos": "b"}\n', encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="pair")
    assert msg.startswith(f"{path}:2: JSON object lacks key 'positive'")
    assert "expected keys (anchor, positive)" in msg and "found keys (anchor, pos)" in msg


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("e.csv", "anchor,positive\nx,y\nx,\n", 3),
        ("e.tsv", "anchor\tpositive\nx\t   \n", 2),
        ("e.jsonl", '{"anchor": "x", "positive": ""}\n', 1),
    ],
)
def test_empty_text_field(tmp_path: Path, name: str, content: str, line: int) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="pair")
    assert msg.startswith(f"{path}:{line}: empty text in column 'positive'")
    assert "expected non-empty text" in msg


def test_jsonl_text_not_a_string(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text('{"text": null}\n', encoding="utf-8")
    assert raises_data_error(read_examples, path) == f"{path}:1: expected a string in column 'text', found null (None)"
    path.write_text('{"text": 12}\n', encoding="utf-8")
    assert "found int (12)" in raises_data_error(read_examples, path)


@pytest.mark.parametrize(
    ("name", "content", "line", "found"),
    [
        ("s.csv", "sentence1,sentence2,score\na,b,0.1\na,b,high\n", 3, "'high'"),
        ("s.tsv", "sentence1\tsentence2\tscore\na\tb\t\n", 2, "''"),
        ("s.jsonl", '{"sentence1": "a", "sentence2": "b", "score": [1]}\n', 1, "[1]"),
        ("b.jsonl", '{"sentence1": "a", "sentence2": "b", "score": true}\n', 1, "True"),
    ],
)
def test_score_not_a_number(tmp_path: Path, name: str, content: str, line: int, found: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="scored")
    assert msg == f"{path}:{line}: expected a number in score column 'score', found {found}"


def test_score_not_finite(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    path.write_text("sentence1,sentence2,score\na,b,nan\n", encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="scored")
    assert msg == f"{path}:2: expected a finite number in score column 'score', found 'nan'"


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "broken"\n', encoding="utf-8")
    msg = raises_data_error(read_examples, path)
    assert msg.startswith(f"{path}:3: invalid JSON: ")
    assert "expected one JSON object per line" in msg


@pytest.mark.parametrize(("value", "found"), [("[1, 2]", "an array"), ('"s"', "a string"), ("3", "a number (3)")])
def test_json_line_not_an_object(tmp_path: Path, value: str, found: str) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(value + "\n", encoding="utf-8")
    msg = raises_data_error(read_examples, path)
    assert msg == f"{path}:1: expected a JSON object with keys (text), found {found}"


@pytest.mark.parametrize(
    ("name", "content", "detail"),
    [
        ("zero.txt", "", "the file has no lines"),
        ("blank.txt", "\n  \n\n", "all 3 lines are blank"),
        ("header.csv", "anchor,positive\n\n", "only a header row (1 blank lines skipped)"),
        ("blank.jsonl", "\n", "all 1 lines are blank"),
    ],
)
def test_file_with_no_examples_is_an_error(tmp_path: Path, name: str, content: str, detail: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = raises_data_error(read_examples, path, kind="pair" if name.endswith(".csv") else "single")
    assert msg == f"{path}: file is empty: no examples found ({detail})"


def test_invalid_utf8_reports_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    data = b"hello\nworld\nab\xffcd\n"
    path.write_bytes(data)
    it = iter_examples(path)
    assert next(it) == Example(("hello",)) and next(it) == Example(("world",))
    with pytest.raises(DataError) as info:
        next(it)
    assert data.index(b"\xff") == 14
    assert str(info.value).startswith(f"{path}:3: invalid UTF-8 byte 0xff at byte offset 14 (invalid start byte)")
    assert info.value.line == 3


def test_invalid_utf8_offset_counts_bom_and_multibyte(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    data = b"\xef\xbb\xbftext\n\xc3\xa9t\xc3\xa9\n\xc3\xa9\xe2\x82\n"  # line 3: truncated 3-byte char
    path.write_bytes(data)
    offset = data.index(b"\xe2")
    assert offset == 16
    msg = raises_data_error(read_examples, path)
    assert msg.startswith(f"{path}:3: invalid UTF-8 byte 0xe2 at byte offset {offset} (invalid continuation byte)")
    path.write_bytes(b"\xef\xbb\xbfa\xfe\n")  # BOM then a bad byte on line 1
    assert "invalid UTF-8 byte 0xfe at byte offset 4" in raises_data_error(read_examples, path, format="text")


def test_line_longer_than_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" + b"x" * 250 + b"\nafter\n")
    it = iter_examples(path, max_line_bytes=100)
    assert next(it) == Example(("short",))
    with pytest.raises(DataError) as info:
        next(it)
    assert str(info.value).startswith(f"{path}:2: line is 250 bytes long, more than the limit of 100 bytes")
    # exactly at the limit (even with CRLF) is fine; one byte over is not
    path.write_bytes(b"y" * 100 + b"\r\n" + b"z" * 100)
    assert [e.texts[0] for e in iter_examples(path, max_line_bytes=100)] == ["y" * 100, "z" * 100]
    path.write_bytes(b"y" * 101 + b"\n")
    assert "line is 101 bytes long" in raises_data_error(read_examples, path, max_line_bytes=100)
    path.write_bytes(b"ok\n" + b"w" * 5000)  # last line without newline, measured in chunks
    assert f"{path}:2: line is 5,000 bytes long" in raises_data_error(read_examples, path, max_line_bytes=100)


def test_unclosed_quote_cannot_swallow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "open_quote.csv"
    path.write_text("text\nfine\n\"never closed\n" + "more text\n" * 100, encoding="utf-8")
    msg = raises_data_error(read_examples, path, max_line_bytes=200)
    assert msg.startswith(f"{path}:3: record spans lines 3-")
    assert "is a quote left open" in msg


def test_configuration_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown kind 'quad'"):
        iter_examples(path, kind="quad")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="supports only kind='single'"):
        iter_examples(path, kind="pair")
    with pytest.raises(ConfigError, match="needs exactly 3 column names"):
        iter_examples(path, format="csv", kind="scored", columns=["a", "b"])
    with pytest.raises(ConfigError, match="needs at least 3 column names"):
        iter_examples(path, format="csv", kind="triplet", columns=["a", "b"])
    with pytest.raises(ConfigError, match="not a single string"):
        iter_examples(path, format="csv", columns="text")
    with pytest.raises(ConfigError, match="more than once"):
        iter_examples(path, format="csv", kind="pair", columns=["a", "a"])
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        iter_examples(path, format="xml")  # type: ignore[arg-type]
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"cannot infer the format from extension '\.parquet'"):
        iter_examples(odd)
    assert issubclass(ConfigError, ContrastkitError) and issubclass(DataError, ValueError)


# --------------------------------------------------------------------------- streaming


def test_iter_examples_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "lazy.csv"
    path.write_text("anchor,positive\na1,p1\na2,p2\nmalformed\na4,p4\n", encoding="utf-8")
    it = iter_examples(path, kind="pair")
    assert next(it) == Example(("a1", "p1"))
    assert next(it) == Example(("a2", "p2"))
    with pytest.raises(DataError, match=r":4: expected 2 columns"):
        next(it)


def test_streaming_reads_only_what_is_consumed(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    line = json.dumps({"text": "x" * 100}) + "\n"
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(20_000):
            fh.write(line)
    stats = ReadStats()
    it = iter_examples(path, stats=stats)
    first = next(it)
    assert first.texts == ("x" * 100,)
    assert stats.lines_read == 1  # only one line was read from a 2 MB file
    it.close()  # type: ignore[attr-defined]


def test_unconsumed_iterator_does_not_open_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("a\n", encoding="utf-8")
    stats = ReadStats()
    iter_examples(path, stats=stats)
    assert stats.lines_read == 0 and stats.source == ""


# --------------------------------------------------------------------------- Example


def test_example_is_frozen_slotted_and_validated() -> None:
    ex = Example(["a", "b"])  # type: ignore[arg-type]
    assert ex.texts == ("a", "b") and ex.score is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.score = 1.0  # type: ignore[misc]
    assert not hasattr(ex, "__dict__")
    assert Example(("a", "b"), 3).score == 3.0
    with pytest.raises(ValueError):
        Example(())
    with pytest.raises(TypeError):
        Example("ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Example(("a", 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Example(("a", "b"), float("inf"))


# --------------------------------------------------------------------------- open_examples and HF datasets


def test_open_examples_dispatches_local_paths(tmp_path: Path) -> None:
    path = write_format(tmp_path, "tsv", "scored")
    assert list(open_examples(str(path), kind="scored")) == expected("scored")
    with pytest.raises(DataError, match="file not found"):
        open_examples(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError):
        open_examples("hf:")
    with pytest.raises(ConfigError, match="local files only"):
        open_examples("hf:some/data", format="csv")


def test_hf_missing_dependency_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(OptionalDependencyError, match=r"install contrastkit\[datasets\]") as info:
        iter_hf_dataset("whatever", kind="pair")
    assert isinstance(info.value, ContrastkitError) and isinstance(info.value, ImportError)


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-row pair dataset written with datasets' save_to_disk."""
    datasets = pytest.importorskip("datasets")
    path = tmp_path_factory.mktemp("hf") / "pairs"
    datasets.Dataset.from_dict(
        {"anchor": ["a1", "a2", "a3"], "positive": ["p1", "p2", "p3"], "extra": [1, 2, 3]}
    ).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("streaming", [True, False])
def test_hf_saved_dataset(saved_dataset: Path, streaming: bool) -> None:
    stats = ReadStats()
    examples = list(iter_hf_dataset(str(saved_dataset), kind="pair", streaming=streaming, stats=stats))
    assert examples == [Example(("a1", "p1")), Example(("a2", "p2")), Example(("a3", "p3"))]
    assert stats.examples == 3 and stats.lines_read == 3


def test_hf_open_examples_and_missing_column(saved_dataset: Path) -> None:
    it = open_examples(f"hf:{saved_dataset}", kind="pair")
    assert next(it) == Example(("a1", "p1"))
    with pytest.raises(DataError) as info:
        iter_hf_dataset(str(saved_dataset), kind="triplet")
    msg = str(info.value)
    assert msg.startswith(f"hf:{saved_dataset}[train]: dataset lacks column 'negative'")
    assert "available columns (anchor, positive, extra)" in msg


def test_hf_json_loader_streaming_and_row_errors(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    path = tmp_path / "rows.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 0.5}\n{"sentence1": "c", "sentence2": "", "score": 1.0}\n',
        encoding="utf-8",
    )
    it = iter_hf_dataset("json", kind="scored", data_files=str(path))
    assert next(it) == Example(("a", "b"), 0.5)
    with pytest.raises(DataError) as info:
        next(it)
    assert str(info.value).startswith("hf:json[train]: row 1: empty text in column 'sentence2'")


def test_hf_missing_split(saved_dataset: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["x"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert list(iter_hf_dataset(str(tmp_path / "dd"), split="test")) == [Example(("x",))]
    with pytest.raises(DataError, match=r"split 'train' not found; available splits \(test\)"):
        iter_hf_dataset(str(tmp_path / "dd"))


def test_iter_json_objects_skips_blank_lines_and_names_bad_ones(tmp_path: Path) -> None:
    from contrastkit.data.readers import iter_json_objects

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n  \n{"b": [2]}\r\n')
    assert list(iter_json_objects(path)) == [(1, {"a": 1}), (4, {"b": [2]})]
    path.write_bytes(b'{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2: expected a JSON object, found an array"):
        list(iter_json_objects(path))
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:1: invalid UTF-8 byte 0xff"):
        list(iter_json_objects(path))
    with pytest.raises(DataError, match="file not found"):
        list(iter_json_objects(tmp_path / "missing.jsonl"))
