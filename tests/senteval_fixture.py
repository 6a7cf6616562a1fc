"""A tiny synthetic SentEval ``downstream`` folder, written in the test run (no benchmark data needed).

Every file the loaders read is there, in SentEval's own layout and formats, with sentences over the tiny
BERT's vocabulary: STS12-16 (every subset, some unscored pairs), STS-B and SICK splits, MR/CR/SUBJ/MPQA,
SST binary and fine, TREC, MRPC. STS gold scores fall with the number of words changed, so a model that
sees words gets a positive correlation. Pipeline tests (report, ``eval all``, the MTEB adapter) run on it;
tests of real figures use ``../shared/data`` and skip without it.
"""

from __future__ import annotations

import random
from pathlib import Path

from conftest import WORDS

TREC_COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
STS_YEARS = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}


def _sentence(rng: random.Random, words: tuple[str, ...] | list[str] = WORDS) -> list[str]:
    return [rng.choice(words) for _ in range(rng.randint(4, 9))]


def _scored_pair(rng: random.Random) -> tuple[str, str, float]:
    """A sentence, a copy with k words replaced, and a gold score falling with k."""
    a = _sentence(rng)
    b = list(a)
    k = rng.randint(0, len(a))
    for i in rng.sample(range(len(a)), k):
        b[i] = rng.choice(WORDS)
    return " ".join(a), " ".join(b), round(5.0 * (1 - k / len(a)), 3)


def _labelled(rng: random.Random, n_classes: int, n: int) -> list[tuple[str, int]]:
    """Sentences whose label decides half their words (each class has its own word pool)."""
    pools = [WORDS[c::n_classes] for c in range(n_classes)]
    out = []
    for i in range(n):
        y = i % n_classes
        words = _sentence(rng, pools[y]) + _sentence(rng)[:3]
        out.append((" ".join(words), y))
    return out


def write_synthetic_senteval(root: Path, *, seed: int = 0, n_pairs: int = 60, n_labelled: int = 80) -> Path:
    """Write the synthetic layout under ``root/senteval``; return ``root`` (pass it as ``data_dir``)."""
    rng = random.Random(seed)
    se = root / "senteval"
    for year, subsets in STS_YEARS.items():
        d = se / "STS" / f"{year}-en-test"
        d.mkdir(parents=True, exist_ok=True)
        for subset in subsets:
            pairs = [_scored_pair(rng) for _ in range(n_pairs // 4)]
            (d / f"STS.input.{subset}.txt").write_text("".join(f"{a}\t{b}\n" for a, b, _ in pairs))
            # every fifth pair unscored (an empty gold line), as in SentEval's STS12-16 files
            (d / f"STS.gs.{subset}.txt").write_text("".join("\n" if i % 5 == 4 else f"{s}\n"
                                                            for i, (_, _, s) in enumerate(pairs)))
    d = se / "STS" / "STSBenchmark"
    d.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        rows = [("main-captions", "MSRvid", "2012test", f"{i:04d}", s, a, b)
                for i, (a, b, s) in enumerate(_scored_pair(rng) for _ in range(n_pairs))]
        (d / f"sts-{split}.csv").write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))
    d = se / "SICK"
    d.mkdir()
    for name in ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt"):
        lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        for i in range(n_pairs):
            a, b, s = _scored_pair(rng)
            rel = 1 + 4 * s / 5
            lines.append(f"{i}\t{a}\t{b}\t{rel:.2f}\t{'ENTAILMENT' if rel >= 4.5 else 'NEUTRAL'}")
        (d / name).write_text("\n".join(lines) + "\n")
    for folder, pos_name, neg_name in (("MR", "rt-polarity.pos", "rt-polarity.neg"),
                                       ("CR", "custrev.pos", "custrev.neg"),
                                       ("SUBJ", "subj.objective", "subj.subjective"),
                                       ("MPQA", "mpqa.pos", "mpqa.neg")):
        d = se / folder
        d.mkdir()
        rows = _labelled(rng, 2, n_labelled)
        (d / pos_name).write_text("".join(t + "\n" for t, y in rows if y == 1))
        (d / neg_name).write_text("".join(t + "\n" for t, y in rows if y == 0))
    for fine in (False, True):
        d = se / "SST" / ("fine" if fine else "binary")
        d.mkdir(parents=True)
        for split in ("train", "dev", "test"):
            rows = _labelled(rng, 5 if fine else 2, n_labelled)
            text = "".join(f"{y} {t}\n" if fine else f"{t}\t{y}\n" for t, y in rows)
            (d / f"sentiment-{split}").write_text(text)
    d = se / "TREC"
    d.mkdir()
    for name in ("train_5500.label", "TREC_10.label"):
        rows = _labelled(rng, len(TREC_COARSE), n_labelled)
        (d / name).write_text("".join(f"{TREC_COARSE[y]}:other {t}\n" for t, y in rows))
    d = se / "MRPC"
    d.mkdir()
    for split in ("train", "test"):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(n_labelled):
            a, b, s = _scored_pair(rng)
            lines.append(f"{int(s >= 2.5)}\t{2 * i}\t{2 * i + 1}\t{a}\t{b}")
        (d / f"msr_paraphrase_{split}.txt").write_text("\n".join(lines) + "\n")
    return root
