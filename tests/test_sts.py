"""Tests of the SimCSE/SentEval STS evaluation (no model needed)."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from contrastkit.errors import ContrastkitError, DataError
from contrastkit.evaluation import (
    SIMCSE_TASKS,
    DataNotFoundError,
    STSTask,
    evaluate_sts,
    load_sts_task,
    report_sts,
    resolve_senteval_dir,
    sickr_dev,
    stsb_dev,
)
from contrastkit.evaluation import senteval as senteval_mod

DIM = 257


def bow_vector(text: str) -> np.ndarray:
    """Hashed bag-of-words counts (integer-valued, so dot products are exact)."""
    v = np.zeros(DIM)
    for tok in text.split():
        v[zlib.crc32(tok.encode("utf-8")) % DIM] += 1.0
    return v


class RecordingEncoder:
    """Deterministic cheap encoder that records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([bow_vector(t) for t in texts]) if texts else np.zeros((0, DIM))

    @property
    def seen(self) -> list[str]:
        return [t for c in self.calls for t in c]


def senteval_cosine(u: np.ndarray, v: np.ndarray) -> float:
    """SentEval's ``utils.cosine`` with its nan_to_num wrapping."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nan_to_num(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))))


# --------------------------------------------------------------------------- fake tree
ALPHA_INPUT = [
    "a man is  playing a guitar .\ta man plays the guitar .",
    "  the cat sat on the mat .\ta dog sat on the log .",
    "unscored sentence one .\tunscored sentence two .",
    "stocks fell sharply today .\tmarkets dropped today .",
    "a woman is slicing an onion .\ta man is playing a guitar .",
]
ALPHA_GOLD = ["4.8", "1.2", "", "3.5", "0.4"]
BETA_INPUT = [
    "the sun is shining .\tit is a sunny day .",
    "a man plays the guitar .\ta man is  playing a guitar .",
    "i like green tea .\tpython is a language .",
]
BETA_GOLD = ["4.0", "4.6", "0.0"]

STSB_LINES = [
    # genre, file, year, id, score, s1, s2 -- quotes must stay as text (QUOTE_NONE)
    'main-news\theadlines\t2015\t0001\t4.200\ta "quoted" headline .\ta quoted headline .',
    "main-captions\tMSRvid\t2012test\t0002\t1.000\ta cat eats .\ta  man runs .",
    "main-captions\tMSRvid\t2012test\t0003\t3.000\ta dog runs .\ta dog is running .",
    "main-forums\tanswer-answer\t2016\t0004\t0.500\tgreen tea .\tblack coffee .\tsrc1\tsrc2",
]
SICK_LINES = [
    "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment",
    "1\tA boy is playing\tA kid is playing\t4.5\tENTAILMENT",
    "2\tA man is cooking\tA woman is dancing\t1.5\tNEUTRAL",
    "3\tTwo dogs run\tTwo dogs are running\t4.9\tENTAILMENT",
]


def _write(path: Path, lines: list[str], newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((newline.join(lines) + newline).encode("utf-8"))


@pytest.fixture()
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny SentEval tree: STS12 with two subsets, STS-B splits, SICK splits."""
    monkeypatch.setitem(senteval_mod.STS_YEAR_SUBSETS, "STS12", ("alpha", "beta"))
    root = tmp_path / "data"
    sts12 = root / "senteval" / "STS" / "STS12-en-test"
    _write(sts12 / "STS.input.alpha.txt", ALPHA_INPUT)
    _write(sts12 / "STS.gs.alpha.txt", ALPHA_GOLD)
    _write(sts12 / "STS.input.beta.txt", BETA_INPUT)
    _write(sts12 / "STS.gs.beta.txt", BETA_GOLD)
    stsb = root / "senteval" / "STS" / "STSBenchmark"
    _write(stsb / "sts-test.csv", STSB_LINES)
    _write(stsb / "sts-dev.csv", STSB_LINES[:3])
    sick = root / "senteval" / "SICK"
    _write(sick / "SICK_test_annotated.txt", SICK_LINES, newline="\r\n")
    _write(sick / "SICK_trial.txt", SICK_LINES)
    return root


def test_fake_sts_year_parsing(fake_root: Path) -> None:
    task = load_sts_task("STS12", fake_root)
    assert len(task) == 7  # 5 + 3 pairs, one unscored dropped
    assert task.groups == ["alpha"] * 4 + ["beta"] * 3
    assert task.subsets == ["alpha", "beta"]
    np.testing.assert_array_equal(task.scores, [4.8, 1.2, 3.5, 0.4, 4.0, 4.6, 0.0])
    texts = [t for p in task.pairs for t in p]
    assert not any("unscored" in t for t in texts)
    # SentEval's tokens joined by single spaces (SimCSE's batcher).
    assert task.pairs[0] == ("a man is playing a guitar .", "a man plays the guitar .")
    assert task.pairs[1][0] == "the cat sat on the mat ."


def test_fake_all_aggregation_matches_independent_spearman(fake_root: Path) -> None:
    enc = RecordingEncoder()
    res = evaluate_sts(enc, ["STS12"], data_dir=fake_root)
    # independent: concatenate the cosines of scored pairs of both subsets, one Spearman
    sys_scores, gold = [], []
    for inp, gs in ((ALPHA_INPUT, ALPHA_GOLD), (BETA_INPUT, BETA_GOLD)):
        for line, g in zip(inp, gs):
            if g == "":
                continue
            a, b = line.split("\t")
            sys_scores.append(senteval_cosine(bow_vector(a), bow_vector(b)))
            gold.append(float(g))
    expected = spearmanr(sys_scores, gold)[0] * 100
    r = res.tasks["STS12"]
    assert r.n == 7
    assert r.spearman == pytest.approx(expected, abs=1e-9)
    assert set(r.subsets) == {"alpha", "beta"}
    assert r.subsets["alpha"]["n"] == 4
    alpha_expected = spearmanr(sys_scores[:4], gold[:4])[0] * 100
    assert r.subsets["alpha"]["spearman"] == pytest.approx(alpha_expected, abs=1e-9)
    # the "all" score is not the mean of the subset scores
    assert res.avg == pytest.approx(r.spearman)
    # each distinct sentence encoded once, in a single call; unscored pair never encoded
    assert len(enc.calls) == 1
    assert len(enc.seen) == len(set(enc.seen))
    assert "a man plays the guitar ." in enc.seen and not any("unscored" in t for t in enc.seen)


def test_dedupe_across_tasks_and_batch_modes(fake_root: Path) -> None:
    enc1, enc2 = RecordingEncoder(), RecordingEncoder()
    names = ["STS12", "STSBenchmark", "STSBenchmark-dev"]
    r1 = evaluate_sts(enc1, names, data_dir=fake_root, batch_texts=True)
    r2 = evaluate_sts(enc2, names, data_dir=fake_root, batch_texts=False)
    assert len(enc1.calls) == 1
    assert len(enc2.calls) == 2  # STSBenchmark-dev adds no new sentence
    assert sorted(enc1.seen) == sorted(enc2.seen)
    assert len(enc1.seen) == len(set(enc1.seen)) == r1.n_sentences
    for name in names:
        assert r1[name] == pytest.approx(r2[name], abs=1e-12)


def test_split_files_follow_senteval(fake_root: Path) -> None:
    stsb = load_sts_task("STSBenchmark", fake_root)
    assert len(stsb) == 4
    assert stsb.pairs[0] == ('a "quoted" headline .', "a quoted headline .")
    assert stsb.pairs[1] == ("a cat eats .", "a man runs .")
    assert stsb.pairs[3] == ("green tea .", "black coffee .")  # extra source columns ignored
    np.testing.assert_array_equal(stsb.scores, [4.2, 1.0, 3.0, 0.5])
    sick = load_sts_task("SICKRelatedness", fake_root)  # CRLF file, header skipped
    assert sick.pairs[0] == ("A boy is playing", "A kid is playing")
    np.testing.assert_array_equal(sick.scores, [4.5, 1.5, 4.9])
    assert len(load_sts_task("SICKRelatedness-dev", fake_root)) == 3
    assert len(load_sts_task("STSBenchmark-dev", fake_root)) == 3


def test_dev_scorers_and_env_var(fake_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_DATA", str(fake_root))
    enc = RecordingEncoder()
    stsb = load_sts_task("STSBenchmark-dev")  # found through CONTRASTKIT_DATA
    assert stsb.source.startswith(str(fake_root))
    sims = [senteval_cosine(bow_vector(a), bow_vector(b)) for a, b in stsb.pairs]
    assert stsb_dev(enc, fake_root) == pytest.approx(spearmanr(sims, stsb.scores)[0] * 100)
    v = sickr_dev(enc, fake_root)
    assert -100.0 <= v <= 100.0


def test_results_outputs(fake_root: Path, tmp_path: Path) -> None:
    res = evaluate_sts(RecordingEncoder(), ["STS12", "STSBenchmark"], data_dir=fake_root)
    md = res.to_markdown()
    assert "| STS12 | STS-B | Avg. |" in md
    d = json.loads(res.to_json())
    assert set(d["tasks"]) == {"STS12", "STSBenchmark"}
    assert d["avg"] == pytest.approx((res["STS12"] + res["STSBenchmark"]) / 2)
    buf = io.StringIO()
    written = report_sts(res, tmp_path / "out", stream=buf)
    assert "Avg." in buf.getvalue() and "STS12" in buf.getvalue()
    assert json.loads(written["json"].read_text())["tasks"]["STS12"]["n"] == 7
    assert written["markdown"].read_text() == md


def test_bad_encoder_output_is_reported(fake_root: Path) -> None:
    with pytest.raises(DataError, match="shape"):
        evaluate_sts(lambda texts: np.zeros((1, 3)), ["STS12"], data_dir=fake_root)


def test_preloaded_task_and_zero_vectors() -> None:
    task = STSTask("toy", [("x", "y"), ("x", "x"), ("", "y")], np.array([1.0, 5.0, 0.0]), ["t"] * 3)
    res = evaluate_sts(lambda ts: np.stack([bow_vector(t) for t in ts]), [task])
    # the empty sentence is a zero vector: SentEval scores it 0 (nan_to_num)
    assert res["toy"] == pytest.approx(spearmanr([0.0, 1.0, 0.0], [1.0, 5.0, 0.0])[0] * 100)


# --------------------------------------------------------------------------- missing data
def test_missing_data_raises_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as ei:
        load_sts_task("STSBenchmark", missing, hub=False)
    msg = str(ei.value)
    assert str(missing) in msg
    assert "CONTRASTKIT_DATA" in msg and "data_dir" in msg
    assert "get_transfer_data.bash" in msg and "mteb/stsbenchmark-sts" in msg
    assert isinstance(ei.value, ContrastkitError)
    with pytest.raises(DataNotFoundError, match="nowhere"):
        evaluate_sts(RecordingEncoder(), SIMCSE_TASKS, data_dir=missing, hub=False)
    with pytest.raises(DataNotFoundError, match="nowhere"):
        resolve_senteval_dir(missing)


def test_missing_data_offline_skips_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="HF_HUB_OFFLINE"):
        load_sts_task("STS12", tmp_path / "nowhere")


def test_unknown_task_name() -> None:
    with pytest.raises(ValueError, match="unknown STS task"):
        load_sts_task("STS99")


# --------------------------------------------------------------------------- real data
def _real_root() -> Path:
    try:
        root = resolve_senteval_dir()
    except DataNotFoundError:
        pytest.skip("SentEval data not present (../shared/data or CONTRASTKIT_DATA)")
    if not (root / "STS" / "STSBenchmark" / "sts-test.csv").is_file():
        pytest.skip(f"no STS data under {root}")
    return root


def test_real_data_matches_independent_senteval_computation() -> None:
    root = _real_root()

    # Independent reading, straight from SentEval's definitions.
    def stsb_expected() -> tuple[float, int]:
        sims, gold = [], []
        with open(root / "STS" / "STSBenchmark" / "sts-test.csv", encoding="utf-8") as fh:
            for line in fh:
                f = line.strip().split("\t")
                a, b = " ".join(f[5].split()), " ".join(f[6].split())
                sims.append(senteval_cosine(bow_vector(a), bow_vector(b)))
                gold.append(float(f[4]))
        return spearmanr(sims, gold)[0] * 100, len(gold)

    def sts12_expected() -> tuple[float, int]:
        folder = root / "STS" / "STS12-en-test"
        sims, gold = [], []
        for sub in ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"):
            with open(folder / f"STS.input.{sub}.txt", encoding="utf8") as fh:
                lines = fh.read().splitlines()
            with open(folder / f"STS.gs.{sub}.txt", encoding="utf8") as fh:
                gs = fh.read().splitlines()
            for line, g in zip(lines, gs, strict=True):
                if g == "":
                    continue
                s1, s2 = line.split("\t")
                a, b = " ".join(s1.split()), " ".join(s2.split())
                sims.append(senteval_cosine(bow_vector(a), bow_vector(b)))
                gold.append(float(g))
        return spearmanr(sims, gold)[0] * 100, len(gold)

    res = evaluate_sts(RecordingEncoder(), ["STS12", "STSBenchmark"], data_dir=root)
    exp_stsb, n_stsb = stsb_expected()
    exp_12, n_12 = sts12_expected()
    assert res.tasks["STSBenchmark"].n == n_stsb == 1379
    assert res.tasks["STS12"].n == n_12 == 3108
    assert abs(res["STSBenchmark"] - exp_stsb) < 1e-9
    assert abs(res["STS12"] - exp_12) < 1e-9


def test_real_data_pair_counts() -> None:
    root = _real_root()
    expected = {"STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                "SICKRelatedness": 4927, "STSBenchmark-dev": 1500, "SICKRelatedness-dev": 500}
    for name, n in expected.items():
        assert len(load_sts_task(name, root)) == n, name
    orig = root / "stsbenchmark-original" / "sts-test.csv"
    if orig.is_file():
        task = load_sts_task("STSBenchmark-original", root)
        assert len(task) == 1379
        assert task.pairs[0][0][0].isupper()  # original casing kept


def test_senteval_mean_and_wmean_aggregations():
    from contrastkit.evaluation.sts import TaskResult

    r = TaskResult(name="STS12", spearman=50.0, pearson=40.0, n=4,
                   subsets={"a": {"spearman": 60.0, "pearson": 0.0, "n": 1},
                            "b": {"spearman": 30.0, "pearson": 0.0, "n": 3}})
    assert r.aggregate("all") == 50.0
    assert r.aggregate("mean") == 45.0  # (60 + 30) / 2
    assert r.aggregate("wmean") == 37.5  # (60*1 + 30*3) / 4
    d = r.to_dict()
    assert (d["spearman_mean"], d["spearman_wmean"]) == (45.0, 37.5)
    with pytest.raises(ValueError, match="aggregation"):
        r.aggregate("median")
