"""Tests of the demo's parts: retrieval metrics, the embedded Bible data, and ``run_demo`` plumbing.

The real extraction runs only where ``diatheke`` and the SWORD modules are installed
(``scripts/install_system_deps.sh``); elsewhere it is skipped and diatheke is mocked.
``run_demo`` runs end to end on a tiny random BERT and synthetic verses (no MiniLM training).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from contrastkit.data import embedded
from contrastkit.data.embedded import HELDOUT_BOOKS, Verse, clean_osis, parse_diatheke
from contrastkit.errors import DataError
from contrastkit.evaluation.paraphrase import (
    evaluate_paraphrase_retrieval,
    first_relevant_ranks,
    retrieval_metrics,
)

from conftest import make_sentences


# ----------------------------------------------------------------------------- metrics
def test_ranks_on_crafted_embeddings() -> None:
    corpus = np.eye(4)  # four orthogonal directions
    queries = np.array([
        [1.0, 0.1, 0.0, 0.0],   # nearest corpus 0; relevant 0 -> rank 1
        [0.9, 0.5, 0.0, 0.0],   # order 0, 1, ...; relevant 1 -> rank 2
        [0.0, 0.0, 0.2, 1.0],   # order 3, 2, ...; relevant 0 -> rank 3 (0 and 1 tie at 0; lower index first)
        [0.0, 0.0, 0.0, -1.0],  # relevant 3 scores lowest -> rank 4
    ])
    ranks = first_relevant_ranks(queries, corpus, [0, 1, 0, 3])
    assert ranks.tolist() == [1, 2, 3, 4]
    m = retrieval_metrics(ranks)
    assert m["recall@1"] == pytest.approx(25.0)
    assert m["recall@10"] == pytest.approx(100.0)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4 * 100)
    assert m["median_rank"] == pytest.approx(2.5)


def test_ties_scale_and_multiple_relevant() -> None:
    corpus = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # 0 and 1 are the same direction
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    # a tie ranks the lower index first; cosine ignores the norm
    assert first_relevant_ranks(q, corpus, [1, 0, 2]).tolist() == [2, 1, 1]
    # several relevant entries: the best-ranked one counts
    assert first_relevant_ranks(q, corpus, [{1, 2}, [2], (0, 2)]).tolist() == [2, 3, 1]
    # chunking does not change anything
    assert first_relevant_ranks(q, corpus, [1, 0, 2], chunk_size=1).tolist() == [2, 1, 1]


def test_mrr_cut_at_10() -> None:
    m = retrieval_metrics([1, 11, 10, 100])
    assert m["recall@10"] == pytest.approx(50.0)
    assert m["mrr@10"] == pytest.approx((1 + 0 + 0.1 + 0) / 4 * 100)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="outside the corpus"):
        first_relevant_ranks(np.eye(2), np.eye(2), [0, 2])
    with pytest.raises(ValueError, match="relevant indices"):
        first_relevant_ranks(np.eye(2), np.eye(2), [0])
    with pytest.raises(ValueError, match="dim"):
        first_relevant_ranks(np.eye(2), np.eye(3), [0, 1])
    with pytest.raises(ValueError):
        retrieval_metrics([])


def _bow(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), 101))
    for i, t in enumerate(texts):
        for tok in t.lower().split():
            out[i, zlib.crc32(tok.encode()) % 101] += 1.0
    return out


def test_evaluate_paraphrase_retrieval_with_a_bag_of_words_encoder() -> None:
    corpus = ["the cat sat on the mat", "a dog ran in the park", "rain fell on the river"]
    queries = ["cat on mat", "dog park", "the river rain", "dog in the park ran"]
    calls: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return _bow(texts)

    res = evaluate_paraphrase_retrieval(encode, queries, corpus, [0, 1, 2, 1], return_ranks=True)
    assert calls == [4, 3]
    assert res["ranks"] == [1, 1, 1, 1]
    assert res["recall@1"] == 100.0 and res["mrr@10"] == 100.0
    assert res["n_queries"] == 4 and res["n_corpus"] == 3
    with pytest.raises(ValueError):
        evaluate_paraphrase_retrieval(encode, queries, corpus, [0, 1])


def test_torch_embeddings_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    ranks = first_relevant_ranks(torch.eye(3), torch.eye(3, dtype=torch.float64), [0, 1, 2])
    assert ranks.tolist() == [1, 1, 1]


# ----------------------------------------------------------------------------- diatheke output parsing
# Shapes taken from diatheke 4.8's default (OSIS) output of the Debian modules.
KJV_SAMPLE = (
    '<title canonical="true" type="psalm">A <w savlm="strong:H4210">Psalm</w> of David.</title> '
    '<lg sID="gen2600"/> <l level="1" sID="gen2601"/> Psalms 3:1: <divineName><w savlm="strong:H3068">LORD'
    '</w></divineName>, how are they <w savlm="strong:H7231">increased</w> that trouble me! '
    '<transChange type="added">are</transChange> they <w savlm="x">tha</w>t rise up. <l eID="gen2601" level="1"/>\n'
    'John 3:16: \u00b6 For God so loved the world.  <chapter eID="John.3"/>\n'
    '(engKJV2006eb)\n'
)
WEB_SAMPLE = (
    'Genesis 1:1: <w savlm="strong:H0430">In</w> the beginning, <w savlm="strong:H0430">God</w>'
    '<w savlm="strong:H1254">created</w> the heavens.\n'
    '<title canonical="true" type="psalm">A Psalm by David.</title> <l level="1" sID="g1"/>Psalms 3:2: '
    'Many say of my soul,<l eID="g1" level="1"/>\n'
    '\u201c<q marker="">There is no help</q><q marker="">for</q> him in God.\u201d\n'
    'I John 1:1: his only born</q><q marker=""><w>Son</w> , the end. <div canonical="true" eID="g9" '
    'osisID="1John" type="book"/> <div type="glossary"/> Abaddon is Hebrew for destruction.\n'
    '(engWEB2015eb)\n'
)


def test_parse_diatheke_kjv() -> None:
    v = parse_diatheke(KJV_SAMPLE)
    assert list(v) == [("Psalms", 3, 1), ("John", 3, 16)]
    assert v[("Psalms", 3, 1)] == "LORD, how are they increased that trouble me! are they that rise up."
    assert v[("John", 3, 16)] == "For God so loved the world."


def test_parse_diatheke_web() -> None:
    v = parse_diatheke(WEB_SAMPLE)
    assert v[("Genesis", 1, 1)] == "In the beginning, God created the heavens."  # glued <w> elements split
    # a verse over several lines; the psalm title is dropped
    assert v[("Psalms", 3, 2)] == "Many say of my soul, \u201cThere is no help for him in God.\u201d"
    # text after the end of the book (the glossary) is not part of the last verse
    assert v[("I John", 1, 1)] == "his only born Son, the end."


def test_clean_osis_notes_and_entities() -> None:
    assert clean_osis('a <note type="x">a footnote</note>b &amp; c ,d') == "a b & c, d"


# ----------------------------------------------------------------------------- embedded data (mocked)
def _synthetic_verses(n_per_book: int = 40) -> list[Verse]:
    books = ["Genesis", "Ruth", "Matthew", "Acts", "Job", "Jude"]
    kjv = make_sentences(n_per_book * len(books), seed=1)
    web = [" ".join(reversed(s.split())) for s in kjv]  # a "paraphrase" with the same words
    out = []
    for i, (a, b) in enumerate(zip(kjv, web)):
        out.append(Verse(books[i // n_per_book], 1 + (i % n_per_book) // 10, 1 + i % 10, a, b))
    return out


def test_bible_verses_cache_and_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path))
    calls: list[int] = []
    verses = _synthetic_verses()

    def fake_extract() -> list[Verse]:
        calls.append(1)
        return verses

    monkeypatch.setattr(embedded, "_extract_bible", fake_extract)
    assert embedded.bible_verses() == verses
    assert embedded.bible_verses() == verses  # second call reads the JSONL cache
    assert calls == [1]
    cache = next((tmp_path / "embedded").glob("bible-kjv-web-*.jsonl"))
    first = json.loads(cache.read_text(encoding="utf-8").splitlines()[0])
    assert first["ref"] == "Genesis 1:1" and first["kjv"] == verses[0].kjv

    train = embedded.embedded_pairs("bible-train")
    held = embedded.embedded_pairs("bible-heldout")
    assert len(train) + len(held) == len(embedded.embedded_pairs("bible")) == len(verses)
    held_books = {v.book for v in verses if (v.kjv, v.web) in set(held)}
    assert held_books == {"Ruth", "Acts", "Job"} and held_books <= set(HELDOUT_BOOKS)
    assert not set(train) & set(held)
    assert len(embedded.embedded_corpus("bible")) == 2 * len(verses)
    assert embedded.embedded_corpus("bible-web")[0] == verses[0].web
    with pytest.raises(DataError, match="unknown embedded"):
        embedded.embedded_pairs("nope")
    with pytest.raises(DataError, match="unknown embedded"):
        embedded.embedded_corpus("nope")


def test_embedded_source_in_a_run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from contrastkit.config import DataConfig
    from contrastkit.run import load_training_examples

    monkeypatch.setattr(embedded, "bible_verses", lambda: _synthetic_verses())
    examples, _ = load_training_examples(DataConfig(source="embedded:bible-kjv", limit=5))
    assert [e.texts for e in examples] == [(v.kjv,) for v in _synthetic_verses()[:5]]


def test_missing_diatheke_names_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="install_system_deps.sh") as err:
        embedded.bible_verses()
    assert "diatheke" in str(err.value)


def test_missing_module_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="sword-text-web"):
        embedded._find_module("web", [("engKJV2006eb", "King James Version")])
    assert embedded._find_module("kjv", [("X", "King James Version (1769)")]) == "X"


def test_wordnet_missing_or_present() -> None:
    if embedded._wordnet_files():
        sents = embedded.wordnet_sentences()
        assert len(sents) > 50_000 and all(len(s.split()) >= 3 for s in sents[:100])
    else:
        with pytest.raises(DataError, match="wordnet-base"):
            embedded.wordnet_sentences()


needs_diatheke = pytest.mark.skipif(
    shutil.which("diatheke") is None
    or "King James" not in subprocess.run(["diatheke", "-b", "system", "-k", "modulelist"], capture_output=True,
                                          text=True, check=False).stdout,
    reason="diatheke / sword-text-kjv not installed (scripts/install_system_deps.sh)")


@needs_diatheke
def test_real_extraction_of_a_few_verses() -> None:
    kjv = embedded.diatheke_verses("kjv", "John 3:16-17")
    assert kjv[("John", 3, 16)].startswith("For God so loved the world, that he gave his only begotten Son")
    assert set(kjv) == {("John", 3, 16), ("John", 3, 17)}
    try:
        web = embedded.diatheke_verses("web", "Gen 1:1")
    except DataError:
        pytest.skip("sword-text-web not installed")
    assert web[("Genesis", 1, 1)] == "In the beginning, God created the heavens and the earth."
    for text in (*kjv.values(), *web.values()):
        assert "<" not in text and "strong:" not in text


# ----------------------------------------------------------------------------- run_demo plumbing
def test_run_demo_on_a_tiny_model(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit import demo

    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "bible_verses", lambda: _synthetic_verses())
    out = tmp_path / "demo"
    report = demo.run_demo(out, quick=True, backbone=str(tiny_bert), limit=32, eval_queries=20, eval_corpus=60)
    printed = capsys.readouterr().out
    assert f"report: {out.resolve() / 'report.md'}" in printed
    assert "held-out KJV->WEB Recall@1" in printed

    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["data"]["train_pairs"] == 32 and saved["data"]["eval_queries"] == 20
    assert saved["data"]["eval_corpus"] == 60
    assert [r["metric"] for r in saved["table"]] == ["held-out KJV->WEB Recall@1", "held-out KJV->WEB Recall@10",
                                                     "held-out KJV->WEB MRR@10"]
    for row in saved["table"]:
        assert row["delta"] == pytest.approx(row["after"] - row["before"])
        assert 0.0 <= row["before"] <= 100.0
    assert saved["training"]["steps"] == 2  # 32 pairs / batch 16
    assert saved["loss_curve"] and saved["loss_curve"][-1]["step"] == 2
    assert saved["config"]["data"]["kind"] == "pair" and saved["config"]["eval"]["tasks"] == []
    assert "Held-out books" in (out / "report.md").read_text(encoding="utf-8")
    assert Path(saved["training"]["model_dir"]).is_dir()
    assert not (out / "train" / "checkpoints").exists()  # optimizer state is dropped after training
    # training pairs come only from the training books
    refs = [json.loads(ln)["ref"] for ln in (out / "train_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(refs) == 32 and not {r.rsplit(" ", 1)[0] for r in refs} & set(HELDOUT_BOOKS)
    assert report["timings_s"]["total"] > 0

    # a second run into the same directory starts afresh, here with hard negatives (triplets)
    again = demo.run_demo(out, quick=True, backbone=str(tiny_bert), limit=32, eval_queries=20, eval_corpus=60,
                          hard_negatives=True)
    assert again["config"]["data"]["kind"] == "triplet"
    first = json.loads((out / "train_pairs.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"anchor", "positive", "negative", "ref"} and first["negative"] != first["positive"]


# ----------------------------------------------------------------------------- general quality and merging
def test_run_demo_general_panel_and_merge(tiny_bert: Path, synthetic_data: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The general-quality rows (synthetic SentEval + a fake Lee corpus), the verdict and the merged saved model."""
    from contrastkit import demo
    from contrastkit.evaluation import longdoc

    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONTRASTKIT_DATA", str(synthetic_data))
    monkeypatch.setattr(demo, "bible_verses", lambda: _synthetic_verses())
    docs = make_sentences(12, seed=3)
    sims = np.random.default_rng(0).random((12, 12))
    (tmp_path / "lee.cor").write_text("\n".join(docs) + "\n", encoding="latin-1")
    np.savetxt(tmp_path / "sims.txt", sims)
    monkeypatch.setattr(longdoc, "_gensim_files", lambda: (tmp_path / "lee.cor", tmp_path / "sims.txt"))

    out = tmp_path / "demo"
    report = demo.run_demo(out, quick=True, backbone=str(tiny_bert), limit=32, eval_queries=20, eval_corpus=60,
                           general=True, merge_alpha=0.5)
    printed = capsys.readouterr().out
    metrics = [r["metric"] for r in report["table"]]
    assert metrics[:3] == ["held-out KJV->WEB Recall@1", "held-out KJV->WEB Recall@10", "held-out KJV->WEB MRR@10"]
    assert [m for m in metrics if m.startswith("general:")] == [label for label, _, _ in demo._ROWS[3:]]
    assert "general: Lee documents (Pearson, 256 tok)" in printed
    assert report["general_verdict"].startswith("General quality") and report["general_verdict"] in printed
    assert report["general_skipped"] == {}
    assert report["after"]["general"]["transfer_tasks"].keys() == set(demo.TRANSFER_SUBSET)

    # the saved model is base + 0.5 x (fine-tuned - base), in its own dir; the fine-tuned one is kept
    from safetensors.torch import load_file

    saved = Path(report["adaptation"]["model_dir"])
    assert saved == out.resolve() / "model" and report["adaptation"]["merge_alpha"] == 0.5
    ft = load_file(str(Path(report["training"]["model_dir"]) / "model.safetensors"))
    base = load_file(str(tiny_bert / "model.safetensors"))
    merged = load_file(str(saved / "model.safetensors"))
    name = next(k for k, t in ft.items() if t.is_floating_point() and not (t == base[k]).all())
    assert (merged[name] - (base[name] + 0.5 * (ft[name] - base[name]))).abs().max() < 1e-6
    assert json.loads((saved / "merge.json").read_text())["alpha"] == 0.5
    assert "WiSE-FT" in (out / "report.md").read_text(encoding="utf-8")
    # the saved model keeps its base's inference length, not the demo's training length (48 here)
    # (tokenizer limit 512, capped at the tiny BERT's 64 position embeddings)
    assert report["adaptation"]["max_seq_length"] == 64 != report["config"]["model"]["max_length"]

    # the base model's panel is cached on disk: a second run encodes none of it again
    assert list((tmp_path / "cache" / "embeddings").iterdir())


def test_general_panel_skips_missing_parts_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    from contrastkit import demo
    from contrastkit.evaluation import longdoc

    monkeypatch.setenv("CONTRASTKIT_DATA", str(tmp_path / "nothing"))
    monkeypatch.chdir(tmp_path)

    def no_gensim(name: str) -> None:
        raise PackageNotFoundError(name)

    monkeypatch.setattr("importlib.metadata.files", no_gensim)
    g = demo.load_general_tasks(True, data_dir=tmp_path / "nothing")
    assert g.empty and g.lee is None and g.senteval_dir is None
    assert "SentEval data not found" in g.skipped["STS, transfer and paraphrase retrieval"]
    assert "gensim==4.4.0" in g.skipped["Lee documents"]
    assert "Skipped Lee documents" in g.note()
    assert demo._general_verdict([("held-out KJV->WEB Recall@1", 1.0, 2.0, 1.0)]).startswith(
        "General quality: not measured")
    with pytest.raises(longdoc.DataNotFoundError, match="gensim"):
        longdoc.load_lee()


def test_merge_alpha_out_of_range_is_refused_before_training(tmp_path: Path) -> None:
    from contrastkit import demo

    with pytest.raises(ValueError, match="merge_alpha must be in"):
        demo.run_demo(tmp_path / "d", quick=True, merge_alpha=1.5)
    assert not (tmp_path / "d").exists()


def test_general_verdict_names_the_rows_that_lost() -> None:
    from contrastkit.demo import _general_verdict

    rows = [("held-out KJV->WEB Recall@1", 50.0, 80.0, 30.0), ("general: a", 80.0, 79.6, -0.4),
            ("general: b", 65.0, 61.0, -4.0)]
    assert _general_verdict(rows) == ("General quality NOT kept: 1 of 2 general-quality rows lost more than 0.5 "
                                      "points (b -4.00).")
    assert _general_verdict(rows[:2]).startswith("General quality kept")


def test_lee_scoring_on_a_known_encoder(tmp_path: Path) -> None:
    from contrastkit.evaluation.longdoc import evaluate_lee, load_lee

    docs = ["alpha beta", "alpha gamma", "delta epsilon"]
    sims = np.array([[1, 0.9, 0.1], [0, 1, 0.2], [0, 0, 1]])
    (tmp_path / "d.cor").write_text("\n".join(docs) + "\n\n", encoding="latin-1")
    np.savetxt(tmp_path / "s.txt", sims)
    task = load_lee(tmp_path / "d.cor", tmp_path / "s.txt")
    assert task.pairs == [(0, 1), (0, 2), (1, 2)] and task.scores.tolist() == [0.9, 0.1, 0.2]
    res = evaluate_lee(_bow, task)
    assert res["n_pairs"] == 3 and res["pearson"] > 90.0


@pytest.mark.skipif(not any(str(f).endswith("similarities0-1.txt") for f in (
    __import__("importlib.metadata").metadata.files("gensim") or [])) if __import__("importlib.util").util.find_spec(
    "gensim") else True, reason="gensim==4.4.0 not installed (pip install contrastkit[assets])")
def test_real_lee_corpus_shape() -> None:
    from contrastkit.evaluation.longdoc import load_lee

    task = load_lee()
    assert len(task.documents) == 50 and len(task.pairs) == 1225
    assert "\u00a3" in " ".join(task.documents)  # Latin-1 pound signs decoded
    assert task.scores.min() >= 0.0 and task.scores.max() <= 1.0
