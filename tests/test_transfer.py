"""SentEval transfer tasks: loaders match SentEval's counts, protocol is deterministic, scores behave."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from contrastkit.evaluation.senteval import resolve_senteval_dir
from contrastkit.evaluation.transfer import (
    TRANSFER_TASKS,
    TransferResults,
    evaluate_transfer,
    load_transfer_task,
)

try:
    resolve_senteval_dir()
    HAVE_DATA = (resolve_senteval_dir() / "MR").is_dir()
except Exception:  # noqa: BLE001
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="SentEval transfer data (../shared/data/senteval) missing")


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def noise_encoder(dim: int = 32):
    """Each text -> a fixed random vector (no information about its label)."""
    def enc(texts: list[str]) -> np.ndarray:
        return np.stack([np.random.default_rng(_seed(t)).standard_normal(dim) for t in texts]).astype(np.float32)
    return enc


def oracle_encoder(label_of: dict[str, int], n_classes: int, dim: int = 32, signal: float = 3.0):
    """Random vector plus a label-dependent direction: linearly separable up to noise."""
    dirs = np.random.default_rng(0).standard_normal((n_classes, dim))
    base = noise_encoder(dim)

    def enc(texts: list[str]) -> np.ndarray:
        return (base(texts) + signal * dirs[[label_of[t] for t in texts]]).astype(np.float32)
    return enc


def _labels(name: str) -> dict[str, int]:
    task = load_transfer_task(name)
    out: dict[str, int] = {}
    for s in task.splits.values():
        out.update(zip(s.texts, s.labels.tolist()))
    return out


@needs_data
def test_loaders_match_senteval_counts():
    sizes = {n: {k: len(v) for k, v in load_transfer_task(n).splits.items()} for n in TRANSFER_TASKS}
    assert sizes == {"MR": {"all": 10662}, "CR": {"all": 3775}, "SUBJ": {"all": 10000}, "MPQA": {"all": 10606},
                     "SST2": {"train": 67349, "dev": 872, "test": 1821}, "TREC": {"train": 5452, "test": 500},
                     "MRPC": {"train": 4076, "test": 1725}}
    mr = load_transfer_task("MR").splits["all"]
    lens = [len(t.split()) for t in mr.texts]
    assert lens == sorted(lens)  # SentEval's order: by length, then label
    assert int(mr.labels.sum()) == 5331
    trec = load_transfer_task("TREC").splits["test"]
    assert "how far is it from denver to aspen ?" in [t.lower() for t in trec.texts]
    assert sorted(set(trec.labels.tolist())) == [0, 1, 2, 3, 4, 5]
    mrpc = load_transfer_task("MRPC").splits["test"]
    assert mrpc.texts_b is not None and int(mrpc.labels.sum()) == 1147


@needs_data
def test_same_seed_same_numbers_and_protocol_dict():
    tasks = ["MR", "SST2", "TREC", "MRPC"]
    a = evaluate_transfer(noise_encoder(), tasks, seed=7, kfold=3, limit=240)
    b = evaluate_transfer(noise_encoder(), tasks, seed=7, kfold=3, limit=240)
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        for key in ("elapsed_s", "encode_s", "classifier_s", "classifier_s_per_task"):
            d.pop(key)
    assert da == db
    assert set(da["tasks"]) == set(tasks)
    assert da["suite"] == "transfer" and da["main_metric"] == "acc"
    assert da["average"] == pytest.approx(np.mean([da["tasks"][t]["acc"] for t in tasks]))
    assert "f1" in da["tasks"]["MRPC"] and "f1" not in da["tasks"]["MR"]
    assert len(da["C_per_fold"]["MR"]) == 3 and len(da["C_per_fold"]["TREC"]) == 1
    json.dumps(da)  # plain JSON
    md = a.to_markdown()
    assert "| MRPC |" in md and "Avg." in md
    assert "MR" in a.to_text()


@needs_data
def test_label_signal_scores_high_and_noise_near_chance():
    for name in ("MR", "SUBJ"):
        good = evaluate_transfer(oracle_encoder(_labels(name), 2), [name], kfold=3, limit=300)
        bad = evaluate_transfer(noise_encoder(), [name], kfold=3, limit=300)
        assert good.tasks[name].acc > 95
        assert 35 < bad.tasks[name].acc < 65
    trec = evaluate_transfer(oracle_encoder(_labels("TREC"), 6), ["TREC"], kfold=3, limit=300)
    assert trec.tasks["TREC"].acc > 90 and trec.tasks["TREC"].n_test == 300


@needs_data
def test_mrpc_uses_pair_features():
    """Paraphrase pairs share one vector: |u - v| = 0 separates them, so accuracy and F1 are high."""
    task = load_transfer_task("MRPC")
    vec: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for s in task.splits.values():
        assert s.texts_b is not None
        for a, b, y in zip(s.texts, s.texts_b, s.labels):
            va = vec.setdefault(a, rng.standard_normal(16))
            if y == 1:
                vec.setdefault(b, va)
            else:
                vec.setdefault(b, rng.standard_normal(16))

    def enc(texts: list[str]) -> np.ndarray:
        return np.stack([vec[t] for t in texts])

    r = evaluate_transfer(enc, ["MRPC"], kfold=3, limit=400).tasks["MRPC"]
    assert r.acc > 85 and r.f1 is not None and r.f1 > 85


@needs_data
def test_each_distinct_sentence_encoded_once_per_task():
    calls: list[list[str]] = []
    base = noise_encoder()

    def enc(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return base(texts)

    evaluate_transfer(enc, ["MRPC", "CR"], kfold=3, limit=200)
    assert len(calls) == 2
    for c in calls:
        assert len(c) == len(set(c))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown transfer task 'XX'"):
        evaluate_transfer(noise_encoder(), ["XX"])
    with pytest.raises(ValueError, match="kfold"):
        evaluate_transfer(noise_encoder(), ["MR"], kfold=1)
    assert isinstance(TransferResults({}), TransferResults) and TransferResults({}).to_dict()["average"] is None


@needs_data
def test_missing_task_data_is_skipped_per_task(tmp_path):
    from contrastkit.evaluation.clustering import evaluate_clustering
    from contrastkit.evaluation.senteval import DataNotFoundError

    root = resolve_senteval_dir()
    partial = tmp_path / "senteval"
    (partial / "STS").mkdir(parents=True)  # marks a SentEval root
    for name in ("MR", "TREC"):
        (partial / name).symlink_to(root / name)
    res = evaluate_transfer(noise_encoder(), ["MR", "CR"], partial, kfold=3, limit=60, skip_missing=True)
    assert set(res.tasks) == {"MR"} and set(res.skipped) == {"CR"}
    assert "CR data not found" in res.skipped["CR"]
    assert res.to_dict()["skipped"] == res.skipped
    assert "Skipped CR: CR data not found" in res.to_markdown()
    with pytest.raises(DataNotFoundError, match="CR data not found"):  # the default: missing data is an error
        evaluate_transfer(noise_encoder(), ["MR", "CR"], partial, kfold=3, limit=60)
    with pytest.raises(DataNotFoundError):  # nothing to run at all: still an error
        evaluate_transfer(noise_encoder(), ["CR", "SUBJ"], partial, kfold=3, limit=60, skip_missing=True)
    clus = evaluate_clustering(noise_encoder(), ["TREC", "SST-fine"], partial, limit=60, n_runs=1, skip_missing=True)
    assert set(clus.tasks) == {"TREC"} and set(clus.skipped) == {"SST-fine"}
    assert "SST-fine" in clus.to_dict()["skipped"] and "Skipped SST-fine:" in clus.to_markdown()
