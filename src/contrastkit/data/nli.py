"""Supervised NLI triplets (premise, entailment, contradiction) from local SentEval files, evaluation text removed.

SentEval ships SNLI's dev and test splits only (no train split), as three line-aligned files per split
(``s1``, ``s2``, ``labels``). Each premise comes with an entailed, a neutral and a contradicted hypothesis,
which gives the SimCSE supervised format (Gao et al., EMNLP 2021): anchor = premise, positive = the
entailment, hard negative = the contradiction. Every triplet that holds a sentence of any STS evaluation or
selection split (STS12-16, STS-B dev/test, SICK-R dev/test) is dropped, so no test-set text is trained on.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

SNLI_SPLITS = ("dev", "test")
"""The SNLI splits SentEval distributes (its files hold no train split)."""

STS_HELD_OUT = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness",
                "STSBenchmark-dev", "SICKRelatedness-dev")
"""Every STS split used to evaluate or select models: their sentences never appear in training data."""

_SPACE_BEFORE = re.compile(r" (?=[.,!?;:%)]|'s\b|n't\b|'re\b|'ll\b|'ve\b|'m\b|'d\b)")


def detokenize(text: str) -> str:
    """SentEval's space-tokenized text as ordinary text: ``"a man 's dog ."`` -> ``"a man's dog."``."""
    return _SPACE_BEFORE.sub("", " ".join(text.split()))


def sentence_key(text: str) -> str:
    """The form two sentences are compared in (case, spacing and tokenization ignored)."""
    return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()


def held_out_sentences(data_dir: str | os.PathLike[str] | None = None,
                       tasks: Sequence[str] = STS_HELD_OUT) -> set[str]:
    """The :func:`sentence_key` of every sentence of the given STS tasks (all of them must be found)."""
    from ..evaluation.senteval import load_sts_task

    return {sentence_key(s) for name in tasks for pair in load_sts_task(name, data_dir).pairs for s in pair}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def snli_triplets(data_dir: str | os.PathLike[str] | None = None, *, held_out: set[str] | None = None,
                  splits: Iterable[str] = SNLI_SPLITS) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(premise, entailment, contradiction) triplets from SentEval's SNLI files, and counts of what was kept.

    A premise with several entailments and contradictions gives one triplet per entailment (its
    contradictions taken in turn). ``held_out`` defaults to :func:`held_out_sentences` of ``data_dir``.
    """
    from ..evaluation.senteval import resolve_senteval_dir

    root = resolve_senteval_dir(data_dir, needed_for="SNLI") / "SNLI"
    banned = held_out_sentences(data_dir) if held_out is None else held_out
    by_premise: dict[str, dict[str, list[str]]] = {}
    pairs = 0
    for split in splits:
        s1, s2, labels = (_lines(root / f"{name}.{split}") for name in ("s1", "s2", "labels"))
        if not len(s1) == len(s2) == len(labels):
            raise ValueError(f"{root}: s1/s2/labels.{split} have {len(s1)}/{len(s2)}/{len(labels)} lines (must match)")
        for premise, hypothesis, label in zip(s1, s2, labels, strict=True):
            pairs += 1
            slot = by_premise.setdefault(detokenize(premise), {"entailment": [], "contradiction": []})
            if label.strip() in slot:
                slot[label.strip()].append(detokenize(hypothesis))
    triplets: list[tuple[str, str, str]] = []
    dropped = 0
    for premise, slot in by_premise.items():
        ents, cons = slot["entailment"], slot["contradiction"]
        for i, ent in enumerate(ents if cons else []):
            triplet = (premise, ent, cons[i % len(cons)])
            if any(sentence_key(s) in banned for s in triplet):
                dropped += 1
                continue
            triplets.append(triplet)
    stats = {"snli_pairs": pairs, "premises": len(by_premise), "triplets": len(triplets),
             "dropped_for_sts_overlap": dropped}
    return triplets, stats


def write_triplets(path: str | os.PathLike[str], triplets: Iterable[tuple[str, str, str]]) -> int:
    """Write triplets as CSV with the header ``anchor,positive,negative``; returns the row count."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["anchor", "positive", "negative"])
        for row in triplets:
            writer.writerow(row)
            n += 1
    return n
