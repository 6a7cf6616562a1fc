"""Encoder: poolers, length-sorted encode, layer truncation, save/load and sentence-transformers parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_sentences
from contrastkit.encoders import Encoder
from contrastkit.encoders.pooling import last_token_index, masked_mean, pool
from contrastkit.errors import ConfigError


def test_masked_mean_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(masked_mean(states, mask), torch.tensor([[2.0, 3.0]]))


def test_last_token_index_right_and_left_padding():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 0]
    assert last_token_index(left).tolist() == [3, 3]


def test_first_last_avg_uses_first_layer_and_last_layer():
    h0, h1, h2 = (torch.full((1, 2, 2), v) for v in (10.0, 1.0, 3.0))
    out = pool("first_last_avg", (h0, h1, h2), h2, torch.ones(1, 2, dtype=torch.long))
    assert torch.allclose(out, torch.full((1, 2), 2.0))


def test_unknown_pooling_is_rejected(tiny_bert: Path):
    with pytest.raises(ConfigError, match="unknown pooling"):
        Encoder.from_pretrained(str(tiny_bert), pooling="max-ish")


@pytest.mark.parametrize("pooling", ["cls", "mean", "first_last_avg", "last_token"])
def test_encode_returns_input_order_regardless_of_length_sorting(tiny_bert: Path, pooling: str):
    enc = Encoder.from_pretrained(str(tiny_bert), pooling=pooling)
    texts = make_sentences(23, seed=3)
    batched = enc.encode(texts, batch_size=4)
    one_by_one = np.stack([enc.encode([t])[0] for t in texts])
    assert batched.shape == (23, enc.dim)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_prompt_pooling_wraps_text(tiny_bert: Path):
    enc = Encoder.from_pretrained(str(tiny_bert), pooling="prompt", prompt_template="the {text} is")
    assert enc.prepare(["dog"]) == ["the dog. is"]  # PromptEOL's sentence fix-up (encoders/readouts.py)
    with pytest.raises(ConfigError, match="prompt_template"):
        Encoder.from_pretrained(str(tiny_bert), pooling="prompt", prompt_template="no placeholder")


def test_encode_rejects_a_single_string(tiny_bert: Path):
    enc = Encoder.from_pretrained(str(tiny_bert))
    with pytest.raises(TypeError, match="list of texts"):
        enc.encode("a dog")
    assert enc.encode([]).shape == (0, enc.dim)


def test_num_layers_truncates_and_survives_save(tiny_bert: Path, tmp_path: Path):
    enc = Encoder.from_pretrained(str(tiny_bert), num_layers=1)
    assert enc.backbone.config.num_hidden_layers == 1
    assert len(enc.backbone.encoder.layer) == 1
    enc.save(tmp_path / "m")
    again = Encoder.from_pretrained(str(tmp_path / "m"))
    assert len(again.backbone.encoder.layer) == 1
    with pytest.raises(ConfigError, match="only 2 layers"):
        Encoder.from_pretrained(str(tiny_bert), num_layers=5)


def test_dropout_override_reaches_modules(tiny_bert: Path):
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.3)
    ps = {m.p for m in enc.backbone.modules() if isinstance(m, torch.nn.Dropout)}
    assert ps == {0.3}


def test_save_writes_no_pickle_and_round_trips(tiny_bert: Path, tmp_path: Path):
    enc = Encoder.from_pretrained(str(tiny_bert), pooling="cls_mlp", max_length=16)
    path = enc.save(tmp_path / "model")
    names = {p.name for p in path.rglob("*") if p.is_file()}
    assert not any(n.endswith((".bin", ".pt", ".pkl", ".pth")) for n in names)
    assert "model.safetensors" in names and "contrastkit_head.safetensors" in names
    again = Encoder.from_pretrained(str(path))
    assert (again.pooling, again.max_length) == ("cls_mlp", 16)
    assert torch.equal(again.head.dense.weight, enc.head.dense.weight)
    texts = make_sentences(5)
    np.testing.assert_array_equal(again.encode(texts), enc.encode(texts))


@pytest.mark.parametrize("pooling", ["cls_mlp", "mean", "last_token"])
def test_trained_model_loads_in_sentence_transformers_with_equal_embeddings(tiny_bert: Path, tmp_path: Path,
                                                                            pooling: str):
    st = pytest.importorskip("sentence_transformers")
    from contrastkit.config import build_config
    from contrastkit.run import train

    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(48, seed=2)) + "\n")
    cfg = build_config({"data": {"source": str(data)},
                        "model": {"backbone": str(tiny_bert), "pooling": pooling, "max_length": 24},
                        "train": {"output_dir": str(tmp_path / "run"), "batch_size": 16, "lr": 1e-3,
                                  "progress": False},
                        "eval": {"tasks": []}})
    result = train(cfg)
    ours = Encoder.from_pretrained(str(result.model_dir))
    before = Encoder.from_pretrained(str(tiny_bert), pooling=pooling)
    texts = make_sentences(30, seed=9)
    a = ours.encode(texts, precision="fp32")
    assert not np.allclose(a, before.encode(texts)), "training changed nothing"
    b = st.SentenceTransformer(str(result.model_dir), device="cpu").encode(texts, batch_size=7)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9999


def test_loads_a_sentence_transformers_directory(tiny_bert: Path, tmp_path: Path):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    model = st.SentenceTransformer(modules=[Transformer(str(tiny_bert), max_seq_length=20),
                                            Pooling(32, pooling_mode="cls"), Normalize()])
    model.save(str(tmp_path / "st"))
    enc = Encoder.from_pretrained(str(tmp_path / "st"))
    assert (enc.pooling, enc.max_length, enc.normalize) == ("cls", 20, True)
    texts = make_sentences(6)
    np.testing.assert_allclose(enc.encode(texts, precision="fp32"), model.encode(texts), atol=1e-5)


def test_modules_json_names_standard_modules(tiny_bert: Path, tmp_path: Path):
    path = Encoder.from_pretrained(str(tiny_bert), pooling="mean").save(tmp_path / "m")
    types = [m["type"] for m in json.loads((path / "modules.json").read_text())]
    assert types == ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling"]


def test_poolers_without_st_equivalent_refuse_to_load_in_st(tiny_bert: Path, tmp_path: Path):
    st = pytest.importorskip("sentence_transformers")
    path = Encoder.from_pretrained(str(tiny_bert), pooling="first_last_avg").save(tmp_path / "m")
    with pytest.raises(Exception, match="contrastkit"):
        st.SentenceTransformer(str(path), device="cpu")
    with pytest.raises(Exception, match="contrastkit.Encoder"):
        st.SentenceTransformer(str(path), device="cpu", trust_remote_code=True)
    assert Encoder.from_pretrained(str(path)).pooling == "first_last_avg"


@pytest.mark.parametrize("buckets", [2, 3])
def test_length_buckets_give_the_same_embeddings_and_gradients(tiny_bert: Path, buckets: int):
    from contrastkit.data import Example
    from contrastkit.views import embed_batch

    enc = Encoder.from_pretrained(str(tiny_bert), pooling="mean")
    enc.eval()  # no dropout: both paths must agree
    exs = [Example(texts=(t, u)) for t, u in zip(make_sentences(12, seed=1), make_sentences(12, seed=2))]
    grads = []
    outs = []
    for b in (1, buckets):
        enc.zero_grad()
        a, p, _ = embed_batch(enc, exs, length_buckets=b)
        (a.sum() + 2 * p.sum()).backward()
        outs.append((a.detach(), p.detach()))
        grads.append(enc.backbone.embeddings.word_embeddings.weight.grad.clone())
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5) and torch.allclose(outs[0][1], outs[1][1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_freeze_layers_stops_gradients_below_k(tiny_bert: Path):
    from contrastkit.config import ModelConfig
    from contrastkit.run import build_encoder

    enc = build_encoder(ModelConfig(backbone=str(tiny_bert), freeze_layers=1))
    layers = enc.backbone.encoder.layer
    assert not any(p.requires_grad for p in enc.backbone.embeddings.word_embeddings.parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    with pytest.raises(ConfigError, match="nothing to train"):
        build_encoder(ModelConfig(backbone=str(tiny_bert), freeze_layers=2))


def test_bias_only_trains_biases_and_norm_gains_alone(tiny_bert: Path):
    from contrastkit.config import ModelConfig
    from contrastkit.run import build_encoder

    enc = build_encoder(ModelConfig(backbone=str(tiny_bert), bias_only=True))
    trainable = {n for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(".bias") or "LayerNorm" in n for n in trainable)
    assert "encoder.layer.0.attention.self.query.bias" in trainable
    assert "embeddings.LayerNorm.weight" in trainable
    assert not enc.backbone.encoder.layer[0].attention.self.query.weight.requires_grad
    with pytest.raises(ConfigError, match="bias_only"):
        build_encoder(ModelConfig(backbone=str(tiny_bert), bias_only=True, freeze_layers=1))


def test_training_uses_eager_attention_on_cpu_and_inference_the_default(tiny_bert: Path):
    enc = Encoder.from_pretrained(str(tiny_bert))
    default = enc.backbone.config._attn_implementation
    enc.train()
    assert enc.backbone.config._attn_implementation == ("eager" if default == "sdpa" else default)
    texts = make_sentences(4)
    enc.eval()
    assert enc.backbone.config._attn_implementation == default
    a = enc.encode(texts)
    enc.train()
    enc.eval()
    np.testing.assert_allclose(enc.encode(texts), a, atol=1e-6)


def _st_dir(tiny_bert: Path, path: Path, *after) -> Path:
    """Save a sentence-transformers model: the tiny BERT, mean pooling, then the given modules."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    torch.manual_seed(0)
    model = st.SentenceTransformer(modules=[Transformer(str(tiny_bert), max_seq_length=24),
                                            Pooling(32, pooling_mode="mean"), *after], device="cpu")
    model.save(str(path))
    return path


def _st_modules():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules

    return modules


@pytest.mark.parametrize("pipeline", ["dense", "dense_layernorm_normalize", "normalize_dense_identity",
                                      "dense_residual"])
def test_st_steps_after_pooling_give_sentence_transformers_embeddings(tiny_bert: Path, tmp_path: Path,
                                                                      pipeline: str):
    import sentence_transformers as st

    m = _st_modules()
    after = {"dense": [m.Dense(32, 16)],
             "dense_layernorm_normalize": [m.Dense(32, 16), m.LayerNorm(16), m.Normalize()],
             "normalize_dense_identity": [m.Normalize(), m.Dense(32, 8, bias=False, activation_function=None)],
             "dense_residual": [m.Dense(32, 12, use_residual=True, activation_function=torch.nn.GELU())]}[pipeline]
    if pipeline == "dense_layernorm_normalize":  # a LayerNorm that is not the identity
        with torch.no_grad():
            after[1].norm.weight.uniform_(0.5, 2.0)
            after[1].norm.bias.uniform_(-1.0, 1.0)
    path = _st_dir(tiny_bert, tmp_path / "st", *after)
    texts = make_sentences(7, seed=4)
    want = st.SentenceTransformer(str(path), device="cpu").encode(texts)
    enc = Encoder.from_pretrained(str(path))
    assert enc.dim == want.shape[1] < 32
    np.testing.assert_allclose(enc.encode(texts, precision="fp32"), want, atol=1e-5)
    # saved again by contrastkit, the steps survive for both loaders
    again = enc.save(tmp_path / "again")
    np.testing.assert_allclose(Encoder.from_pretrained(str(again)).encode(texts, precision="fp32"), want, atol=1e-5)
    np.testing.assert_allclose(st.SentenceTransformer(str(again), device="cpu").encode(texts), want, atol=1e-5)


def test_unsupported_st_modules_are_refused_by_name(tiny_bert: Path, tmp_path: Path):
    m = _st_modules()
    path = _st_dir(tiny_bert, tmp_path / "st", m.Dense(32, 16))
    modules = json.loads((path / "modules.json").read_text())
    modules[2]["type"] = "my_package.Projection"
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="'my_package.Projection' at position 2 is not supported"):
        Encoder.from_pretrained(str(path))
    modules[2]["type"] = "sentence_transformers.models.Dense"
    modules[1], modules[2] = modules[2], modules[1]  # Dense before pooling: not the pooled embedding
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Dense.*not supported"):
        Encoder.from_pretrained(str(path))
    cfg = {"embedding_dimension": 32, "pooling_mode": ["mean", "max"]}
    modules[1], modules[2] = modules[2], modules[1]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="pooling"):
        Encoder.from_pretrained(str(path))


@pytest.mark.parametrize("bad", ["../other", "/etc", "2_Dense/../../other"])
def test_modules_json_paths_outside_the_model_dir_are_refused(tiny_bert: Path, tmp_path: Path, bad: str):
    m = _st_modules()
    path = _st_dir(tiny_bert, tmp_path / "st", m.Dense(32, 16))
    _st_dir(tiny_bert, tmp_path / "other", m.Dense(32, 8))
    modules = json.loads((path / "modules.json").read_text())
    modules[2]["path"] = bad
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="outside the model directory"):
        Encoder.from_pretrained(str(path))


def test_pickle_only_model_dirs_are_refused_clearly(tiny_bert: Path, tmp_path: Path):
    import shutil

    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert, pickled)
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="only in pickle files \\(pytorch_model.bin\\).*only safetensors"):
        Encoder.from_pretrained(str(pickled))
    m = _st_modules()
    path = _st_dir(tiny_bert, tmp_path / "st", m.Dense(32, 16))
    dense = path / "2_Dense"
    torch.save(load_file(str(dense / "model.safetensors")), dense / "pytorch_model.bin")
    (dense / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="Dense weights are only in pickle files"):
        Encoder.from_pretrained(str(path))
