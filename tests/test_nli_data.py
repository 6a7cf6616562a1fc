"""SNLI triplets from SentEval files: format, grouping, and removal of STS evaluation sentences."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from contrastkit.data.nli import (
    detokenize,
    held_out_sentences,
    snli_triplets,
    write_triplets,
)
from contrastkit.evaluation.senteval import load_sts_task


def _snli(root: Path, split: str, rows: list[tuple[str, str, str]]) -> None:
    d = root / "senteval" / "SNLI"
    d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("s1", "s2", "labels")):
        (d / f"{name}.{split}").write_text("".join(r[i] + " \n" for r in rows), encoding="utf-8")


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    from senteval_fixture import write_synthetic_senteval

    root = write_synthetic_senteval(tmp_path)
    sts_sentence = load_sts_task("STSBenchmark", root).pairs[0][0]
    _snli(root, "dev", [
        ("A man 's dog runs .", "A dog runs .", "entailment"),
        ("A man 's dog runs .", "A cat sleeps .", "contradiction"),
        ("A man 's dog runs .", "The dog is fast .", "neutral"),
        ("Kids play outside .", "Children are outdoors .", "entailment"),
        ("Kids play outside .", "Children are outside .", "entailment"),
        ("Kids play outside .", "Kids sleep indoors .", "contradiction"),
        ("Only neutral here .", "Maybe .", "neutral"),
    ])
    _snli(root, "test", [
        (sts_sentence.replace(" ", "  "), "Something else entirely .", "entailment"),
        (sts_sentence, "Not that at all .", "contradiction"),
    ])
    return root


def test_triplets_pair_entailments_with_contradictions_and_drop_sts_text(data: Path) -> None:
    triplets, stats = snli_triplets(data)
    assert triplets == [
        ("A man's dog runs.", "A dog runs.", "A cat sleeps."),
        ("Kids play outside.", "Children are outdoors.", "Kids sleep indoors."),
        ("Kids play outside.", "Children are outside.", "Kids sleep indoors."),
    ]
    assert stats == {"snli_pairs": 9, "premises": 4, "triplets": 3, "dropped_for_sts_overlap": 1}
    banned = held_out_sentences(data)
    assert not any(s for t in triplets for s in t if s.lower() in banned)


def test_triplets_written_as_csv_read_back_as_training_triplets(data: Path, tmp_path: Path) -> None:
    from contrastkit.data import read_examples

    triplets, _ = snli_triplets(data)
    path = tmp_path / "nli.csv"
    assert write_triplets(path, triplets) == 3
    with open(path, encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == ["anchor", "positive", "negative"]
    examples, _ = read_examples(path, kind="triplet", columns=["anchor", "positive", "negative"])
    assert [tuple(e.texts) for e in examples] == triplets


def test_misaligned_files_are_named(data: Path) -> None:
    (data / "senteval" / "SNLI" / "labels.test").write_text("entailment\n")
    with pytest.raises(ValueError, match=r"SNLI: s1/s2/labels.test have 2/2/1 lines"):
        snli_triplets(data)


def test_detokenize() -> None:
    assert detokenize(" A  man 's dog does n't run , he walks . ") == "A man's dog doesn't run, he walks."
