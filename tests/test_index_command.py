"""``contrastkit index``: atomic build, input errors named by line, metadata kept, model check, k cap."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from conftest import build_tiny_bert, make_sentences
from contrastkit.cli import main
from contrastkit.search import Store


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _build(model: Path, inp: Path, store: Path, *extra: str) -> int:
    return main(["index", "build", "--model", str(model), "--input", str(inp), "--store", str(store),
                 "--no-progress", *extra])


def _search(capsys: pytest.CaptureFixture[str], store: Path, query: str, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert main(["index", "search", "--store", str(store), "--query", query, *extra]) == 0
    return json.loads(capsys.readouterr().out)["hits"]


def test_build_with_bad_input_leaves_nothing_and_a_rerun_works(tiny_bert: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    docs = make_sentences(4, seed=1)
    bad = _jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": docs[0]}, {"id": "b", "text": docs[1]},
                                           {"id": "a", "text": docs[2]}])
    store = tmp_path / "st"
    assert _build(tiny_bert, bad, store) == 2
    assert "docs.jsonl:3: id 'a' repeats the id of line 1" in capsys.readouterr().err
    assert not store.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]
    _jsonl(bad, [{"id": "a", "text": docs[0]}, {"id": "b", "text": docs[1]}, {"id": "c", "text": docs[2]}])
    assert _build(tiny_bert, bad, store) == 0
    with Store.open(store) as st:
        assert len(st) == 3 and st.model == str(tiny_bert.resolve()) and st.fingerprint is not None
    assert _build(tiny_bert, bad, store) == 2  # an existing store is never overwritten
    assert "not an empty directory" in capsys.readouterr().err


@pytest.mark.parametrize("rows, line, message", [
    ([{"id": "a", "text": "x"}, {"id": True, "text": "y"}], 2, "'id' must be a non-empty string or an integer"),
    ([{"id": "a", "text": "x"}, {"id": "", "text": "y"}], 2, "'id' must be a non-empty string"),
    ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"text": "z"}], 3, "1 of 3 lines lack an 'id'"),
    ([{"text": "x"}, {"id": 1, "text": "y"}], 1, "1 of 2 lines lack an 'id' (line 1 is the first)"),
    ([{"text": "x", "lang": "en", "metadata": {"lang": "de"}}], 1, "both at the top level and inside"),
    ([{"text": "x", "metadata": [1]}], 1, "'metadata' must be an object"),
])
def test_input_errors_name_the_line(rows: list[dict], line: int, message: str, tiny_bert: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    inp = _jsonl(tmp_path / "in.jsonl", rows)
    assert _build(tiny_bert, inp, tmp_path / "st") == 2
    err = capsys.readouterr().err
    assert f"in.jsonl:{line}: " in err and message in err
    assert not (tmp_path / "st").exists()


def test_extra_top_level_keys_are_kept_as_metadata(tiny_bert: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    docs = make_sentences(4, seed=2)
    inp = _jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "text": docs[0], "lang": "en"},
        {"id": "b", "text": docs[1], "lang": "de", "metadata": {"year": 2020}},
        {"id": "c", "text": docs[2], "lang": "en", "tags": ["x"]},
        {"id": 4, "text": docs[3]}])
    store = tmp_path / "st"
    assert _build(tiny_bert, inp, store) == 0
    hits = _search(capsys, store, docs[0], "--where", "lang=en")
    assert {h["id"] for h in hits} == {"a", "c"}
    assert {h["id"]: h["metadata"] for h in _search(capsys, store, docs[1], "-k", "4")} == {
        "a": {"lang": "en"}, "b": {"lang": "de", "year": 2020}, "c": {"lang": "en", "tags": ["x"]}, "4": {}}


def test_search_k_is_capped_at_the_store_size(tiny_bert: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "d.txt"
    inp.write_text("\n".join(make_sentences(30, seed=3)) + "\n")
    assert _build(tiny_bert, inp, tmp_path / "st") == 0
    assert len(_search(capsys, tmp_path / "st", "a dog", "-k", "100000000")) == 30


@pytest.mark.parametrize("name", ["d.jsonl", "d.txt"])
def test_an_unreadable_input_file_is_named(name: str, tiny_bert: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / name
    inp.write_text('{"text": "a dog"}\n' if name.endswith("jsonl") else "a dog\n")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # chmod 000 does not stop root, so refuse like the OS would
        if str(file) == str(inp):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    assert _build(tiny_bert, inp, tmp_path / "st") == 2
    assert f"{inp}: cannot open file: Permission denied" in capsys.readouterr().err


def test_another_model_is_refused_unless_forced(tiny_bert: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = build_tiny_bert(tmp_path / "other", seed=1)  # same dimension, other weights
    docs = make_sentences(6, seed=4)
    inp = _jsonl(tmp_path / "d.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)])
    more = _jsonl(tmp_path / "more.jsonl", [{"id": "m", "text": "a red car"}])
    store = tmp_path / "st"
    assert _build(tiny_bert, inp, store) == 0
    capsys.readouterr()
    for argv in (["index", "search", "--store", str(store), "--query", "dog", "--model", str(other)],
                 ["index", "add", "--store", str(store), "--input", str(more), "--model", str(other), "--no-progress"],
                 ["serve", "--model", str(other), "--store", str(store)]):
        assert main(argv) == 2, argv
        assert "gives other embeddings" in capsys.readouterr().err
    assert len(_search(capsys, store, "dog", "--model", str(other), "--force")) == 6
    assert len(_search(capsys, store, "dog", "--model", str(tiny_bert))) == 6  # the same model passes
    assert main(["index", "add", "--store", str(store), "--input", str(more), "--no-progress"]) == 0
    assert main(["index", "add", "--store", str(store), "--input", str(more), "--no-progress"]) == 2
    assert "more.jsonl:1: 1 id(s) already in the store" in capsys.readouterr().err
