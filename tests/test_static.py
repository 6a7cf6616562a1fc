"""Static (token-table) encoder: pooling math, persistence, distillation from a teacher, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from conftest import make_sentences
from contrastkit.cli import main
from contrastkit.encoders import Encoder, StaticEncoder
from contrastkit.encoders.static_distill import distill_static, sif_weights, teacher_token_vectors
from contrastkit.errors import ConfigError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tiny_bert: Path) -> Encoder:
    return Encoder.from_pretrained(str(tiny_bert))


def _table(teacher: Encoder, dim: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(teacher.tokenizer), dim)).astype(np.float32)


def test_encode_is_the_normalised_mean_of_token_rows(teacher: Encoder):
    table = _table(teacher)
    st = StaticEncoder(table, teacher.tokenizer)
    vocab = teacher.tokenizer.get_vocab()
    want = table[[vocab["dog"], vocab["is"], vocab["happy"]]].mean(0)
    out = st.encode(["Dog is happy", "the cat", ""], batch_size=2)
    np.testing.assert_allclose(out[0], want / np.linalg.norm(want), rtol=1e-5)
    raw = st.encode(["dog is happy"], normalize=False)
    np.testing.assert_allclose(raw[0], want, rtol=1e-5)
    assert np.all(out[2] == 0)  # a text without tokens gets a zero vector, not NaN
    assert isinstance(st.encode(["a"], convert_to="torch"), torch.Tensor)
    with pytest.raises(TypeError):
        st.encode("a dog")
    with pytest.raises(ConfigError, match="rows"):
        StaticEncoder(table[:5], teacher.tokenizer)


def test_save_load_roundtrip_and_transparent_loading(teacher: Encoder, tmp_path: Path):
    st = StaticEncoder(_table(teacher), teacher.tokenizer, meta={"teacher": "tiny"})
    texts = make_sentences(20, seed=1)
    st.save(tmp_path / "m")
    back = StaticEncoder.load(tmp_path / "m")
    np.testing.assert_array_equal(back.encode(texts), st.encode(texts))
    assert back.meta["teacher"] == "tiny"
    via = Encoder.from_pretrained(str(tmp_path / "m"))  # dispatches on the static config
    assert isinstance(via, StaticEncoder)
    np.testing.assert_array_equal(via.encode(texts), st.encode(texts))
    st.save(tmp_path / "m")  # overwrite in place
    from sentence_transformers import SentenceTransformer

    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "m"), device="cpu").encode(texts),
                               st.encode(texts), atol=1e-6)


def test_teacher_token_vectors_embed_each_token_alone(teacher: Encoder):
    vecs = teacher_token_vectors(teacher, batch_size=16)
    vocab = teacher.tokenizer.get_vocab()
    assert vecs.shape == (len(vocab), teacher.dim)
    for word in ("dog", "guitar", "the"):
        np.testing.assert_allclose(vecs[vocab[word]], teacher.encode([word], precision="fp32")[0], atol=1e-5)


def test_sif_weights_by_hand():
    w = sif_weights(np.array([0, 1, 3]), a=0.5)
    p = np.array([1, 2, 4]) / 7  # add-one smoothed counts over 4 + 3
    np.testing.assert_allclose(w, 0.5 / (0.5 + p), rtol=1e-6)
    assert w[0] > w[1] > w[2]  # rarer tokens weigh more


def _agreement(student: StaticEncoder, teacher: Encoder, texts: list[str]) -> float:
    """Spearman between the student's and the teacher's pairwise cosine similarities."""
    s, t = student.encode(texts), teacher.encode(texts, normalize=True)
    iu = np.triu_indices(len(texts), 1)
    return float(spearmanr((s @ s.T)[iu], (t @ t.T)[iu])[0])


def test_distillation_tuning_moves_the_student_toward_the_teacher(teacher: Encoder):
    corpus = make_sentences(600, seed=2)
    held_out = make_sentences(60, seed=3)
    base = distill_static(teacher, dim=16, corpus=corpus, steps=0, cache=False)
    tuned = distill_static(teacher, dim=16, corpus=corpus, steps=150, batch_size=64, lr=1e-2, cache=False)
    assert tuned.dim == 16 and tuned.vocab_size == len(teacher.tokenizer)
    assert tuned.meta["distill"]["steps"] == 150 and tuned.meta["distill"]["corpus_texts"] == 600
    assert _agreement(tuned, teacher, held_out) > _agreement(base, teacher, held_out) + 0.05
    with pytest.raises(ConfigError, match="exceeds"):
        distill_static(teacher, dim=teacher.dim + 1, corpus=corpus, steps=0, cache=False)
    with pytest.raises(ConfigError, match="unknown setting"):
        distill_static(teacher, corpus=corpus, stepz=3)


def test_distill_cli_writes_a_loadable_model(tiny_bert: Path, tmp_path: Path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_sentences(200, seed=4)) + "\n")
    out = tmp_path / "static"
    assert main(["distill", "--teacher", str(tiny_bert), "--output", str(out), "--dim", "8", "--corpus",
                 str(corpus), "--steps", "5", "--no-cache", "--no-progress"]) == 0
    assert "static model" in capsys.readouterr().out
    model = Encoder.from_pretrained(str(out))
    assert model.encode(["a dog plays"]).shape == (1, 8)
    texts = make_sentences(30, seed=5)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")  # the encode command takes static models too
    assert main(["encode", "--model", str(out), "--input", str(tmp_path / "in.txt"), "--output",
                 str(tmp_path / "shards"), "--shard-size", "7", "--no-progress"]) == 0
    from contrastkit.encoding import load_shards

    np.testing.assert_allclose(load_shards(tmp_path / "shards"), model.encode(texts), atol=1e-6)
    assert main(["distill", "--teacher", str(tiny_bert), "--output", str(out), "--corpus",
                 str(tmp_path / "missing.txt"), "--no-progress"]) == 2
    assert "missing.txt" in capsys.readouterr().err
