"""The MTEB adapter: a local MTEB STS task scored by mteb itself matches our own Spearman of cosine."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

pytest.importorskip("mteb")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _distinct_pairs(encoder: Any, n: int, data: Path) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    """``n`` STS-B test pairs (of the synthetic layout) whose cosines under ``encoder`` are at least 2e-6 apart.

    Pairs with (almost) equal cosines would be ordered by float32 rounding, which differs between mteb's
    cosine and ours.
    """
    from contrastkit.evaluation.senteval import load_sts_task
    from contrastkit.evaluation.sts import paired_cosine

    task = load_sts_task("STSBenchmark", data)
    task.pairs, task.scores = task.pairs[:500], task.scores[:500]
    emb_a = encoder.encode([a for a, _ in task.pairs], precision="fp32")
    emb_b = encoder.encode([b for _, b in task.pairs], precision="fp32")
    sims = paired_cosine(emb_a, emb_b)
    keep: list[int] = []
    for i, s in enumerate(sims):
        if s < 1 - 1e-5 and all(abs(s - sims[j]) > 2e-6 for j in keep):
            keep.append(i)
        if len(keep) == n:
            break
    assert len(keep) == n
    return [task.pairs[i] for i in keep], task.scores[keep], sims[keep]


def _local_task(pairs: list[tuple[str, str]], gold: np.ndarray) -> Any:
    """An MTEB STS task whose data comes from memory (no hub)."""
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    class LocalSTSB(AbsTaskSTS):
        metadata = TaskMetadata(
            name="ContrastkitLocalSTSB", description="50 synthetic STS-B-layout test pairs.",
            reference=None, type="STS", category="t2t", modalities=["text"], eval_splits=["test"],
            eval_langs=["eng-Latn"], main_score="cosine_spearman",
            dataset={"path": "local/stsb-test-50", "revision": "local"}, date=None, domains=None,
            task_subtypes=None, license=None, annotations_creators=None, dialect=None, sample_creation=None,
            bibtex_citation=None)
        min_score = 0
        max_score = 5

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = DatasetDict({"test": Dataset.from_dict({
                "sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs],
                "score": [float(x) for x in gold]})})
            self.data_loaded = True

    return LocalSTSB()


def test_mteb_evaluate_matches_our_spearman(tiny_bert: Path, synthetic_data: Path, no_network: None) -> None:
    import mteb
    from mteb.models import EncoderProtocol

    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.mteb_adapter import MTEBModel, to_mteb

    model = to_mteb(tiny_bert, batch_size=16)
    assert isinstance(model, MTEBModel) and isinstance(model, EncoderProtocol)
    meta = model.mteb_model_meta
    assert meta.name == f"contrastkit/{tiny_bert.name}" and meta.embed_dim == 32
    assert meta.similarity_fn_name.value == "cosine"

    pairs, gold, ours = _distinct_pairs(Encoder.from_pretrained(str(tiny_bert)), 50, synthetic_data)
    result = mteb.evaluate(model, _local_task(pairs, gold), cache=None, co2_tracker=False,
                           show_progress_bar=False, encode_kwargs={"batch_size": 8})
    assert not result.exceptions
    scores = result.task_results[0].scores["test"][0]
    expected = float(spearmanr(ours, gold)[0])
    assert np.isfinite(expected) and np.std(ours) > 1e-4  # distinct similarities, a defined correlation
    assert scores["cosine_spearman"] == pytest.approx(expected, abs=1e-6)
    assert scores["main_score"] == pytest.approx(expected, abs=1e-6)
    # the adapter's own similarity (AbsEncoder with cosine meta) gives the same ranking
    assert scores["spearman"] == pytest.approx(expected, abs=1e-6)


def test_adapter_encode_reads_batches_in_order(tiny_bert: Path) -> None:
    from torch.utils.data import DataLoader

    from conftest import make_sentences
    from contrastkit.encoders import Encoder
    from contrastkit.evaluation.mteb_adapter import to_mteb

    enc = Encoder.from_pretrained(str(tiny_bert))
    model = to_mteb(enc)
    texts = make_sentences(23, seed=3)
    meta = _local_task([("a", "b")] * 3, np.ones(3)).metadata
    loader = DataLoader([{"text": t} for t in texts], batch_size=5)  # default collate: {"text": [...]}
    emb = model.encode(loader, task_metadata=meta, hf_split="test", hf_subset="default")
    assert emb.shape == (23, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, enc.encode(texts, precision="fp32"), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ContrastkitLocalSTSB.*text only"):
        model.encode(DataLoader([{"image": 1}], batch_size=1), task_metadata=meta, hf_split="test",
                     hf_subset="default")
