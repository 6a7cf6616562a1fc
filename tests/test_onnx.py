"""ONNX export and the ONNX Runtime encode backend, on a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_sentences
from contrastkit.cli import main
from contrastkit.encoders import Encoder
from contrastkit.encoders.onnx_backend import OnnxBackbone, export_model, export_onnx
from contrastkit.errors import ConfigError


@pytest.fixture(scope="module")
def exported(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny model with onnx/model.onnx and onnx/model_int8.onnx (via the CLI)."""
    out = tmp_path_factory.mktemp("onnx-export") / "model"
    Encoder.from_pretrained(str(tiny_bert), pooling="mean").save(out)
    assert main(["export", "--model", str(out), "--format", "onnx", "--quantize", "int8"]) == 0
    return out


def test_cli_export_writes_files_and_metadata(exported: Path) -> None:
    meta = json.loads((exported / "onnx" / "export.json").read_text())
    assert (exported / "onnx" / "model.onnx").is_file() and (exported / "onnx" / "model_int8.onnx").is_file()
    assert set(meta["files"]) == {"onnx", "onnx-int8"} and meta["onnxruntime"]
    assert meta["files"]["onnx"]["max_abs_dev"] < 1e-4
    assert meta["files"]["onnx-int8"]["size_mb"] < meta["files"]["onnx"]["size_mb"]


def test_onnx_graph_matches_torch_on_new_shapes(exported: Path) -> None:
    enc = Encoder.from_pretrained(str(exported)).eval()
    ort = OnnxBackbone(exported / "onnx" / "model.onnx", threads=1)
    for texts in (["a dog"], make_sentences(5, seed=3), ["a " * 40]):  # batch 1, padding, long
        feats = enc.tokenize(texts)
        with torch.no_grad():
            ref = enc.backbone(**feats).last_hidden_state
        got = ort(feats)["last_hidden_state"]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("n", [3, 57])  # fewer texts than workers x batch (split), and many batches in flight
def test_parallel_onnx_runs_keep_input_order(exported: Path, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = make_sentences(n, seed=5)
    ref = Encoder.from_pretrained(str(exported), backend="onnx", threads=1).encode(texts, batch_size=4)
    enc = Encoder.from_pretrained(str(exported), backend="onnx", threads=3)
    assert enc.ort is not None and enc.ort.workers == 3
    calls: list[int] = []
    run = enc.ort.session.run
    monkeypatch.setattr(enc.ort, "session", type("S", (), {
        "run": staticmethod(lambda names, feed: calls.append(len(feed["input_ids"])) or run(names, feed))})())
    threads = torch.get_num_threads()
    np.testing.assert_allclose(enc.encode(texts, batch_size=4), ref, atol=1e-5)
    assert torch.get_num_threads() == threads  # one torch thread only while the ONNX workers run
    assert sum(calls) == n and max(calls) <= 4
    if n == 3:
        assert calls == [1, 1, 1]  # one text per worker rather than one batch of 3 on one thread


def test_encode_with_onnx_backend_equals_torch(exported: Path) -> None:
    texts = make_sentences(23, seed=1)
    ref = Encoder.from_pretrained(str(exported), backend="torch").encode(texts, batch_size=8, precision="fp32")
    enc = Encoder.from_pretrained(str(exported), backend="onnx", threads=1)
    assert enc.backend == "onnx:model.onnx"
    np.testing.assert_allclose(enc.encode(texts, batch_size=8), ref, atol=1e-4)
    np.testing.assert_allclose(enc.encode(texts, batch_size=8, precision="bf16"), ref, atol=1e-4)  # ignored
    # training still runs torch: gradients flow through the torch backbone
    enc.train()
    enc(enc.tokenize(texts[:4])).sum().backward()
    assert enc.backbone.get_input_embeddings().weight.grad is not None


def test_int8_backend_correlates(exported: Path) -> None:
    texts = make_sentences(40, seed=2)
    ref = Encoder.from_pretrained(str(exported)).encode(texts, normalize=True, precision="fp32")
    got = Encoder.from_pretrained(str(exported), backend="onnx-int8", threads=1).encode(texts, normalize=True)
    cos = (ref * got).sum(1)
    assert cos.min() > 0.9, cos.min()
    assert not np.allclose(ref, got, atol=1e-6)  # really the quantized graph


def test_backend_env_var(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_BACKEND", "onnx")
    assert Encoder.from_pretrained(str(exported)).backend == "onnx:model.onnx"
    monkeypatch.setenv("CONTRASTKIT_BACKEND", "tensorrt")
    with pytest.raises(ConfigError, match="CONTRASTKIT_BACKEND"):
        Encoder.from_pretrained(str(exported))
    monkeypatch.delenv("CONTRASTKIT_BACKEND")
    assert Encoder.from_pretrained(str(exported)).backend == "torch"


def test_missing_onnx_dir_and_bad_format_are_clear_errors(tiny_bert: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="contrastkit export"):
        Encoder.from_pretrained(str(tiny_bert), backend="onnx")
    with pytest.raises(ConfigError, match="backend"):
        Encoder.from_pretrained(str(tiny_bert), backend="tflite")
    with pytest.raises(SystemExit):
        main(["export", "--model", str(tiny_bert), "--format", "tflite"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--output"):
        export_model("no/such/hub-model")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ConfigError, match="cannot load ONNX model"):
        OnnxBackbone(tmp_path / "onnx" / "model.onnx")


def test_first_last_avg_exports_first_layer_too(tiny_bert: Path, tmp_path: Path) -> None:
    enc = Encoder.from_pretrained(str(tiny_bert), pooling="first_last_avg")
    texts = make_sentences(9, seed=4)
    ref = enc.encode(texts, batch_size=4, precision="fp32")
    enc.use_onnx(export_onnx(enc, tmp_path / "m.onnx"), threads=1)
    assert enc.ort is not None and "first_hidden_state" in enc.ort.output_names
    np.testing.assert_allclose(enc.encode(texts, batch_size=4), ref, atol=1e-4)


def test_bf16_encode_is_close_and_follows_training(tiny_bert: Path) -> None:
    enc = Encoder.from_pretrained(str(tiny_bert))
    texts = make_sentences(12, seed=5)
    ref = enc.encode(texts, normalize=True)
    got = enc.encode(texts, normalize=True, precision="bf16")
    assert (ref * got).sum(1).min() > 0.99
    with torch.no_grad():
        enc.backbone.get_input_embeddings().weight.mul_(-1)  # an in-place update, as an optimizer step makes
    again = enc.encode(texts, normalize=True, precision="bf16")
    assert not np.allclose(again, got, atol=1e-2), "stale bf16 copy after a weight update"
    assert next(enc.backbone.parameters()).dtype == torch.float32  # the model itself stays fp32


def test_check_sts_without_data_exports_and_says_the_check_was_skipped(
        tiny_bert: Path, synthetic_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model"
    Encoder.from_pretrained(str(tiny_bert), pooling="mean").save(out)
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert main(["export", "--model", str(out), "--format", "onnx", "--check-sts", "--data-dir", str(empty)]) == 0
    printed = capsys.readouterr().out
    assert "STS-B check skipped: STS data not found" in printed and "--data-dir" in printed
    meta = json.loads((out / "onnx" / "export.json").read_text())
    assert (out / "onnx" / "model.onnx").is_file() and "STS data not found" in meta["stsb_check_skipped"]
    assert "stsb_test_spearman" not in meta["files"]["onnx"]
    # with data the check runs and is recorded
    assert main(["export", "--model", str(out), "--format", "onnx", "--check-sts",
                 "--data-dir", str(synthetic_data)]) == 0
    meta = json.loads((out / "onnx" / "export.json").read_text())
    assert meta["stsb_check_skipped"] is None
    assert meta["files"]["onnx"]["stsb_delta_vs_torch"] == pytest.approx(0, abs=0.5)
