"""The command line builds the same run as the API and reports bad input as a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_sentences
from contrastkit.cli import main
from contrastkit.encoders import Encoder
from contrastkit.evaluation.senteval import DataNotFoundError, resolve_senteval_dir


def _has_senteval() -> bool:
    try:
        resolve_senteval_dir()
        return True
    except DataNotFoundError:
        return False


def _write_config(tmp_path: Path, model: Path, **train) -> Path:
    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(40, seed=6)) + "\n")
    cfg = {"data": {"source": str(data)}, "model": {"backbone": str(model), "pooling": "mean"},
           "train": {"output_dir": str(tmp_path / "run"), "batch_size": 8, "progress": False, **train},
           "eval": {"tasks": []}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_with_overrides_then_encode(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert)
    assert main(["train", str(cfg), "--set", "train.max_steps=3", "--set", "model.max_length=12"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 3 and saved["model"]["max_length"] == 12
    assert json.loads((tmp_path / "run" / "train_state.json").read_text())["step"] == 3

    texts = tmp_path / "in.txt"
    texts.write_text("a dog\n\nthe cat is big\n")
    out = tmp_path / "emb.npy"
    assert main(["encode", "--model", str(tmp_path / "run" / "model"), "--input", str(texts), "--output",
                 str(out), "--no-progress"]) == 0
    emb = np.load(out)
    enc = Encoder.from_pretrained(str(tmp_path / "run" / "model"))
    np.testing.assert_allclose(emb, enc.encode(["a dog", "the cat is big"]), atol=1e-6)


def test_bad_config_key_is_a_clean_error(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert)
    assert main(["train", str(cfg), "--set", "train.batchsize=4"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.batchsize'" in err and "Traceback" not in err


def test_missing_input_file_is_a_clean_error(tiny_bert: Path, tmp_path: Path, capsys):
    assert main(["encode", "--model", str(tiny_bert), "--input", str(tmp_path / "none.txt"), "--output",
                 str(tmp_path / "x.npy")]) == 2
    assert "none.txt" in capsys.readouterr().err


def test_resume_flag_continues_a_finished_run(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, max_steps=2, checkpoint_every=1)
    assert main(["train", str(cfg)]) == 0
    assert main(["train", str(cfg)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(cfg), "--resume"]) == 0
    assert "continuing from step-00000002" in capsys.readouterr().out
    assert main(["train", str(cfg), "--resume", "--set", "train.lr=0.1"]) == 2
    assert "differs" in capsys.readouterr().err


@pytest.mark.skipif(not _has_senteval(), reason="SentEval data not found")
def test_eval_sts_writes_tables(tiny_bert: Path, tmp_path: Path, capsys):
    assert main(["eval", "sts", "--model", str(tiny_bert), "--tasks", "STSBenchmark-dev", "--output",
                 str(tmp_path / "ev"), "--no-progress"]) == 0
    assert "STS-B dev" in capsys.readouterr().out
    res = json.loads((tmp_path / "ev" / "sts.json").read_text())
    assert "STSBenchmark-dev" in json.dumps(res)
    assert (tmp_path / "ev" / "sts.md").read_text().strip()


def test_streaming_data_trains_the_same_number_of_steps(tiny_bert: Path, tmp_path: Path):
    cfg = _write_config(tmp_path, tiny_bert)
    assert main(["train", str(cfg), "--set", "data.streaming=true", "--set", "data.shuffle_buffer=7",
                 "--set", "data.limit=33"]) == 0
    state = json.loads((tmp_path / "run" / "train_state.json").read_text())
    assert state["step"] == 4 and state["samples"] == 32  # 33 examples, batch 8: a last batch of one is dropped


def test_resume_may_change_operational_settings_only(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, max_steps=2, checkpoint_every=1)
    assert main(["train", str(cfg), "--set", "train.max_minutes=1e-9"]) == 0
    assert main(["train", str(cfg), "--resume", "--set", "train.num_threads=1"]) == 0
    assert "continuing from step-00000001" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "train_state.json").read_text())["step"] == 2
