"""Reranking: listwise loss, cross-encoder training + sentence-transformers loading, LLM yes/no reranker,
retrieve-then-rerank, distillation into a bi-encoder, the CLI and POST /v1/rerank over real HTTP."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from contrastkit.cli import main
from contrastkit.data.examples import Example
from contrastkit.encoders import Encoder
from contrastkit.rerank import (CrossEncoderReranker, LLMReranker, listwise_softmax_loss, mine_rerank_examples,
                                rerank, rerank_candidates, retrieve_then_rerank, train_cross_encoder)
from contrastkit.rerank.training import distill_cross_encoder
from contrastkit.search import Store
from contrastkit.serve import create_app, encoder_fn

from conftest import build_tiny_llama, check_kill_and_resume, make_sentences, serving

KEY = "sekret"


def _pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(sentence, the sentence without its first word): near-duplicate positives."""
    sents = [s for s in make_sentences(3 * n, seed=seed) if len(s.split()) >= 4]
    return [(s, " ".join(s.split()[1:])) for s in dict.fromkeys(sents)][:n]


class WordOverlap:
    """A reranker scoring a pair by the number of shared words (hand-checkable)."""

    def predict(self, pairs: Any, *, batch_size: int = 32) -> np.ndarray:
        return np.array([len(set(q.split()) & set(d.split())) for q, d in pairs], dtype=np.float32)


@pytest.fixture(scope="module")
def bi_encoder(tiny_bert: Path, one_thread: None) -> Encoder:
    return Encoder.from_pretrained(str(tiny_bert))


@pytest.fixture(scope="module")
def mined(bi_encoder: Encoder) -> list[Example]:
    examples, stats = mine_rerank_examples(_pairs(24), lambda t: bi_encoder.encode(t, convert_to="torch"),
                                           num_negatives=3, rank_window=(0, 12), margin=5.0)
    assert stats.pairs == 24 and stats.mined + stats.left_out == 24 and stats.mined >= 20
    return examples


@pytest.fixture(scope="module")
def trained(tiny_bert: Path, mined: list[Example], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ce = CrossEncoderReranker.from_pretrained(str(tiny_bert), seed=0)
    # a tiny random BERT learns slowly: it overfits 8 queries (loss 1.39 -> about 0.4), which shows the gradient path
    history = train_cross_encoder(ce, mined[:8], steps=40, batch_size=8, lr=3e-3, warmup=0.0, log_every=10)
    path = ce.save(tmp_path_factory.mktemp("ce") / "model")
    return {"model": ce, "path": path, "history": history}


def test_listwise_softmax_loss_by_hand() -> None:
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    want = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(1 / (1 + math.e + 1))) / 2
    assert float(listwise_softmax_loss(scores)) == pytest.approx(want, abs=1e-6)
    assert float(listwise_softmax_loss(scores, temperature=0.5)) == pytest.approx(
        float(listwise_softmax_loss(scores * 2)), abs=1e-6)
    with pytest.raises(ValueError, match="1\\+k"):
        listwise_softmax_loss(torch.zeros(3, 1))


def test_mined_negatives_are_other_positives(mined: list[Example]) -> None:
    positives = {ex.texts[1] for ex in mined}
    for ex in mined:
        assert len(ex.texts) == 5 and ex.texts[1] not in ex.texts[2:] and ex.texts[0] not in ex.texts[2:]
        assert set(ex.texts[2:]) <= positives


def test_cross_encoder_learns_and_sentence_transformers_loads_it(trained: dict[str, Any],
                                                                  mined: list[Example]) -> None:
    from sentence_transformers import CrossEncoder

    hist = trained["history"]
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    pairs = [(ex.texts[0], d) for ex in mined[:6] for d in ex.texts[1:]]
    ours = trained["model"].predict(pairs, batch_size=5)
    st = CrossEncoder(str(trained["path"])).predict(pairs, batch_size=7)
    np.testing.assert_allclose(ours, st, atol=1e-5, rtol=0)
    again = CrossEncoderReranker.from_pretrained(str(trained["path"]))
    assert again.max_length == trained["model"].max_length
    np.testing.assert_allclose(again.predict(pairs), ours, atol=1e-6, rtol=0)
    logits = again.predict(pairs, activation=False)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), ours, atol=1e-6)


def test_rerank_api_orders_and_cuts() -> None:
    res = rerank(WordOverlap(), "a b c", ["x", "a b", "a b c d", "a"], top_n=3, return_documents=True)
    assert [(r.index, r.relevance_score, r.document) for r in res] == [(2, 3.0, "a b c d"), (1, 2.0, "a b"),
                                                                       (3, 1.0, "a")]
    tied = rerank(WordOverlap(), "a", ["a", "b", "a"])
    assert [r.index for r in tied] == [0, 2, 1] and tied[0].document is None
    with pytest.raises(ValueError):
        rerank(WordOverlap(), "a", ["a"], top_n=0)
    ranked = rerank_candidates(WordOverlap(), {"q1": "a b", "q2": "c"},
                               {"q1": [("d1", "c"), ("d2", "a b"), ("d3", "a")], "q2": [("d4", "x"), ("d5", "c")]})
    assert ranked == {"q1": ["d2", "d3", "d1"], "q2": ["d5", "d4"]}


def test_retrieve_then_rerank_over_a_store(bi_encoder: Encoder, tmp_path: Path) -> None:
    docs = make_sentences(30, seed=5)
    fns = encoder_fn(bi_encoder)
    with Store.create(tmp_path / "store", bi_encoder.dim, "exact", encoder=fns.encode) as store:
        store.add(docs, ids=[f"d{i}" for i in range(30)])
        query = docs[3]
        retrieved = store.search(query, k=10)
        hits = retrieve_then_rerank(store, WordOverlap(), query, k=10, top_n=4)
    # sorted() is stable: ties keep the retrieval order, as retrieve_then_rerank does
    want = sorted(retrieved, key=lambda h: -len(set(query.split()) & set(h.text.split())))[:4]
    assert [h.id for h in hits] == [h.id for h in want]
    assert hits[0].id == "d3" and hits[0].score == float(len(set(query.split())))


def test_llm_reranker_is_yes_over_yes_plus_no(tmp_path: Path) -> None:
    from contrastkit.lm.causal import load_causal_lm
    from contrastkit.rerank.llm import DEFAULT_VIEWS

    path = build_tiny_llama(tmp_path / "llm", texts=[*DEFAULT_VIEWS, "Yes No"])
    model, tok = load_causal_lm(str(path))
    rr = LLMReranker(model, tok, views=DEFAULT_VIEWS)
    assert not rr.chat and len(rr.yes_ids) == 1 and len(rr.no_ids) == 1
    sents = make_sentences(6, seed=2)
    pairs = [(sents[0], sents[1]), (sents[2], sents[3] + " " + sents[4]), (sents[5], sents[0])]
    got = rr.predict(pairs, batch_size=2)  # left-padded batches of different lengths

    def one(prompt: str) -> float:  # each prompt alone, unpadded
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            p = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
        return float(torch.log(p[rr.yes_ids].sum()) - torch.log(p[rr.no_ids].sum()))

    for (q, d), g in zip(pairs, got):
        odds = [one(rr.prompt(v, q, d)) for v in DEFAULT_VIEWS]
        assert g == pytest.approx(1 / (1 + math.exp(-sum(odds) / 2)), abs=1e-5)
    single = LLMReranker(model, tok)
    q, d = pairs[0]
    ids = tok(single.prompt(single.views[0], q, d), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    want = float(p[single.yes_ids].sum() / (p[single.yes_ids].sum() + p[single.no_ids].sum()))
    assert single.predict([pairs[0]])[0] == pytest.approx(want, abs=1e-5)


def test_distillation_moves_the_student_towards_the_teacher(tiny_bert: Path, trained: dict[str, Any],
                                                            mined: list[Example]) -> None:
    student = Encoder.from_pretrained(str(tiny_bert))
    history = distill_cross_encoder(student, trained["model"], mined, steps=24, batch_size=8, lr=1e-3,
                                    log_every=8)
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]


RESUME_KW = {"steps": 6, "batch_size": 4, "lr": 3e-3, "log_every": 1, "checkpoint_every": 2, "progress": False}


def test_cross_encoder_training_resumes_after_a_kill(tiny_bert: Path, mined: list[Example], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.rerank import training

    def run(run_dir: Path, resume: bool) -> dict[str, torch.Tensor]:
        ce = CrossEncoderReranker.from_pretrained(str(tiny_bert), seed=0)
        train_cross_encoder(ce, mined[:12], run_dir=run_dir, resume=resume, **RESUME_KW)
        return ce.state_dict()

    start = CrossEncoderReranker.from_pretrained(str(tiny_bert), seed=0).state_dict()
    check_kill_and_resume(monkeypatch, capsys, training, "listwise_softmax_loss", run, tmp_path, start)


def test_distillation_resumes_after_a_kill(tiny_bert: Path, trained: dict[str, Any], mined: list[Example],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.rerank import training

    def run(run_dir: Path, resume: bool) -> dict[str, torch.Tensor]:
        student = Encoder.from_pretrained(str(tiny_bert))
        distill_cross_encoder(student, trained["model"], mined[:12], run_dir=run_dir, resume=resume, **RESUME_KW)
        return student.state_dict()

    start = Encoder.from_pretrained(str(tiny_bert)).state_dict()
    check_kill_and_resume(monkeypatch, capsys, training, "listwise_distill", run, tmp_path, start)


def test_cli_score_train_and_distill(tiny_bert: Path, trained: dict[str, Any], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    docs = make_sentences(5, seed=9)
    (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")
    assert main(["rerank", "score", "--model", str(trained["path"]), "--query", docs[0], "--input",
                 str(tmp_path / "docs.txt"), "--top-n", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = trained["model"].predict([(docs[0], d) for d in docs])
    assert [r["index"] for r in out["results"]] == np.argsort(-want, kind="stable")[:3].tolist()
    assert out["results"][0]["document"] == docs[out["results"][0]["index"]]
    assert out["results"][0]["relevance_score"] == pytest.approx(float(want.max()), abs=1e-6)

    (tmp_path / "pairs.tsv").write_text("anchor\tpositive\n" + "".join(f"{q}\t{p}\n" for q, p in _pairs(12, seed=4)))
    assert main(["rerank", "train", "--base", str(tiny_bert), "--pairs", str(tmp_path / "pairs.tsv"), "--output",
                 str(tmp_path / "ce"), "--steps", "2", "--batch-size", "2", "--negatives", "2", "--window-hi", "8",
                 "--margin", "5"]) == 0
    from sentence_transformers import CrossEncoder

    assert CrossEncoder(str(tmp_path / "ce")).predict([("a man", "a dog")]).shape == (1,)
    assert main(["rerank", "distill", "--teacher", str(tmp_path / "ce"), "--student", str(tiny_bert), "--pairs",
                 str(tmp_path / "pairs.tsv"), "--output", str(tmp_path / "bi"), "--steps", "2", "--batch-size", "2",
                 "--negatives", "2", "--window-hi", "8", "--margin", "5"]) == 0
    assert Encoder.from_pretrained(str(tmp_path / "bi")).encode(["a man"]).shape == (1, 32)
    capsys.readouterr()
    assert main(["rerank", "score", "--model", str(trained["path"]), "--query", "q", "--input",
                 str(tmp_path / "missing.txt")]) == 2


def test_cli_rerank_train_stopped_by_max_minutes_resumes_to_the_uninterrupted_weights(
        tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pairs.tsv").write_text("anchor\tpositive\n" + "".join(f"{q}\t{p}\n" for q, p in _pairs(12, seed=4)))
    common = ["rerank", "train", "--base", str(tiny_bert), "--pairs", str(tmp_path / "pairs.tsv"), "--steps", "4",
              "--batch-size", "2", "--negatives", "2", "--window-hi", "8", "--margin", "5", "--lr", "1e-3"]
    assert main([*common, "--output", str(tmp_path / "straight")]) == 0
    # a time limit reached at once stops after the first step, with a checkpoint; --resume runs the other three
    assert main([*common, "--output", str(tmp_path / "cut"), "--max-minutes", "1e-9"]) == 0
    assert "reached at step 1/4" in capsys.readouterr().out
    cut = CrossEncoderReranker.from_pretrained(str(tmp_path / "cut")).state_dict()
    assert main([*common, "--output", str(tmp_path / "cut"), "--resume"]) == 0
    assert "resume: continuing from step-00000001 (step 1," in capsys.readouterr().out
    want = CrossEncoderReranker.from_pretrained(str(tmp_path / "straight")).state_dict()
    got = CrossEncoderReranker.from_pretrained(str(tmp_path / "cut")).state_dict()
    assert any(not torch.equal(cut[k], want[k]) for k in want)  # the stopped run had not finished
    assert all(torch.equal(got[k], want[k]) for k in want)


# ----------------------------------------------------------------------------- POST /v1/rerank, real HTTP
@pytest.fixture(scope="module")
def server(bi_encoder: Encoder, trained: dict[str, Any]) -> Iterator[dict[str, Any]]:
    ce = trained["model"]

    def fn(query: str, documents: list[str]) -> np.ndarray:
        return ce.predict([(query, d) for d in documents])

    app = create_app(encoder_fn(bi_encoder), model_name="tiny", dim=bi_encoder.dim, api_key=KEY, max_batch=8,
                     max_text_chars=200, reranker=fn, reranker_name="tiny-ce")
    with serving(app) as url:
        yield {"url": url, "ce": ce}


def _post(url: str, body: Any, key: str | None = KEY, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (bytes, str)):
        return httpx.post(url + "/v1/rerank", content=body, headers={**headers, "Content-Type": "application/json"},
                          timeout=30)
    return httpx.post(url + "/v1/rerank", json=body, headers=headers, timeout=30, **kw)


def test_rerank_endpoint_over_http(server: dict[str, Any]) -> None:
    docs = make_sentences(6, seed=11)
    query = docs[2]
    want = server["ce"].predict([(query, d) for d in docs])
    r = _post(server["url"], {"query": query, "documents": docs, "top_n": 4, "return_documents": True,
                              "model": "tiny-ce"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny-ce" and len(body["results"]) == 4
    assert [x["index"] for x in body["results"]] == np.argsort(-want, kind="stable")[:4].tolist()
    for x in body["results"]:
        assert x["relevance_score"] == pytest.approx(float(want[x["index"]]), abs=1e-6)
        assert x["document"] == {"text": docs[x["index"]]}
    full = _post(server["url"], {"query": query, "documents": docs, "top_n": 100}).json()["results"]
    assert len(full) == 6 and "document" not in full[0]
    scores = [x["relevance_score"] for x in full]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("body,status,needle", [
    ({"query": "a man", "documents": []}, 400, "'documents' is empty"),
    ({"query": "", "documents": ["a"]}, 400, "'query'[0] is an empty string"),
    ({"documents": ["a"]}, 400, "query: Field required"),
    ({"query": "a", "documents": "a man"}, 400, "documents"),
    ({"query": "a", "documents": ["a", 3]}, 400, "documents.1"),
    ({"query": "a", "documents": ["a"], "top_n": 0}, 400, "top_n"),
    ({"query": "a", "documents": ["a"], "top_n": True}, 400, "top_n"),
    ({"query": "a", "documents": ["a"], "top_n": "2"}, 400, "top_n"),
    ({"query": "a", "documents": ["a"], "rank_fields": ["x"]}, 400, "unknown field"),
    ({"query": "a", "documents": ["a"] * 9}, 413, "at most 8"),
    ({"query": "a", "documents": ["a" * 201]}, 413, "limit is 200"),
    ({"query": "a", "documents": ["a"], "model": "other"}, 404, "not served here"),
    ('{"query": "a", "documents": [', 400, "not valid JSON"),
])
def test_rerank_endpoint_refuses_bad_requests(server: dict[str, Any], body: Any, status: int, needle: str) -> None:
    r = _post(server["url"], body)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_rerank_endpoint_needs_key_and_a_reranker(server: dict[str, Any], bi_encoder: Encoder) -> None:
    assert _post(server["url"], {"query": "a", "documents": ["a"]}, key=None).status_code == 401
    app = create_app(encoder_fn(bi_encoder), model_name="tiny", dim=bi_encoder.dim)
    with serving(app) as url:
        r = _post(url, {"query": "a", "documents": ["a"]}, key=None)
    assert r.status_code == 400 and "no reranker" in r.json()["error"]["message"]
