"""LoRA through PEFT: only adapters train; merged models load in sentence-transformers, adapters alone in contrastkit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_sentences

pytest.importorskip("peft")


def _train(tiny_bert: Path, tmp_path: Path, save: str, steps: int = 6):
    from contrastkit.config import build_config
    from contrastkit.run import train

    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(48, seed=3)) + "\n")
    cfg = build_config({
        "data": {"source": str(data)},
        "model": {"backbone": str(tiny_bert), "pooling": "mean", "dropout": 0.1,
                  "lora": {"r": 4, "alpha": 8.0, "target_modules": ["query", "value"], "save": save}},
        "train": {"output_dir": str(tmp_path / f"run-{save}"), "batch_size": 8, "lr": 5e-2, "max_steps": steps,
                  "progress": False, "seed": 3},
        "eval": {"tasks": []},
    })
    return train(cfg)


def test_only_adapters_train_and_the_merged_model_loads_in_sentence_transformers(tiny_bert: Path,
                                                                                  tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    from contrastkit.encoders import Encoder

    result = _train(tiny_bert, tmp_path, "merged")
    saved = Path(result.model_dir)
    base = load_file(str(tiny_bert / "model.safetensors"))
    merged = load_file(str(saved / "model.safetensors"))
    assert not any("lora" in k for k in merged)  # a plain model directory
    changed = {k for k in base if k in merged and not torch.equal(base[k], merged[k])}
    # the adapted projections moved (merged in), nothing else did
    assert changed and all(k.endswith(("query.weight", "value.weight")) for k in changed), changed

    texts = make_sentences(12, seed=9)
    ours = Encoder.from_pretrained(str(saved)).encode(texts, precision="fp32")
    theirs = st.SentenceTransformer(str(saved), device="cpu").encode(texts, convert_to_numpy=True)
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cos.min() >= 0.9999


def test_adapter_save_holds_only_the_adapter_and_reloads_equal(tiny_bert: Path, tmp_path: Path) -> None:
    from contrastkit.encoders import Encoder
    from contrastkit.encoders.adapters import is_adapted
    from contrastkit.run import build_encoder

    result = _train(tiny_bert, tmp_path, "adapter")
    saved = Path(result.model_dir)
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert not (saved / "model.safetensors").exists()
    adapter = load_file(str(saved / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    meta = json.loads((saved / "contrastkit.json").read_text())
    assert meta["adapter"]["base"] == str(tiny_bert) and meta["adapter"]["r"] == 4

    enc = Encoder.from_pretrained(str(saved))
    assert is_adapted(enc.backbone)
    texts = make_sentences(10, seed=2)
    got = enc.encode(texts, precision="fp32")
    base = Encoder.from_pretrained(str(tiny_bert), pooling="mean").encode(texts, precision="fp32")
    assert not np.allclose(got, base, atol=1e-4)  # the adapter is applied
    # the saved adapter tensors, loaded by hand into a freshly adapted base, give the same vectors
    again = build_encoder(_lora_model_cfg(tiny_bert))
    again.backbone.load_state_dict(
        {k.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight"): v
         for k, v in adapter.items()}, strict=False)
    np.testing.assert_allclose(again.eval().encode(texts, precision="fp32"), got, atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    with pytest.raises(Exception, match="ContrastkitModule"):  # refused naming contrastkit's module, not misloaded
        st.SentenceTransformer(str(saved), device="cpu")


def _lora_model_cfg(tiny_bert: Path):
    from contrastkit.config import ModelConfig

    return ModelConfig(backbone=str(tiny_bert), pooling="mean",
                       lora={"r": 4, "alpha": 8.0, "target_modules": ["query", "value"]})


def test_lora_config_errors_are_clear(tiny_bert: Path) -> None:
    from contrastkit.config import build_config
    from contrastkit.errors import ConfigError
    from contrastkit.run import build_encoder

    with pytest.raises(ConfigError, match="model.lora"):
        build_config({"data": {"source": "x.txt"}, "model": {"backbone": "m", "lora": {"rank": 4}}})
    with pytest.raises(ConfigError, match="model.lora"):
        build_config({"data": {"source": "x.txt"}, "model": {"backbone": "m", "lora": {"save": "zip"}}})
    cfg = _lora_model_cfg(tiny_bert)
    cfg.lora.target_modules = ["no_such_module"]
    with pytest.raises(ConfigError, match="model.lora"):
        build_encoder(cfg)
    cfg = _lora_model_cfg(tiny_bert)
    cfg.freeze_layers = 1
    with pytest.raises(ConfigError, match="freeze_layers"):
        build_encoder(cfg)
