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


def test_resume_a_run_dir_reuses_its_saved_config(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, checkpoint_every=1)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--set", "train.max_steps=2", "--set", "model.max_length=12"]) == 0
    capsys.readouterr()
    # the README's line: the run's own config.yaml, with its --set values, is reused
    assert main(["train", "--resume", str(run)]) == 0
    assert "continuing from step-00000002" in capsys.readouterr().out
    # the original file without the --set values differs: each key is named, with the flag that accepts it
    assert main(["train", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "model.max_length: 12 (saved) -> 32 (now)" in err and "train.max_steps: 2 (saved) -> None (now)" in err
    assert "--allow-change model.max_length --allow-change train.max_steps" in err
    assert main(["train", "--resume", str(run), "--set", "train.lr=1e-4"]) == 2
    assert "train.lr: 3e-05 (saved) -> 0.0001 (now)" in capsys.readouterr().err


def test_a_refused_new_run_leaves_the_saved_config_alone(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, checkpoint_every=1, max_steps=2)
    run = tmp_path / "run"
    assert main(["train", str(cfg)]) == 0
    before = (run / "config.yaml").read_text()
    assert main(["train", str(cfg), "--set", "train.lr=0.5"]) == 2
    assert f"contrastkit train --resume {run}" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before
    assert main(["train", "--resume", str(run)]) == 0


def test_resume_accepts_named_changes_and_trains_with_them(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, checkpoint_every=1, max_steps=2, lr=1e-3, log_every=1)
    run = tmp_path / "run"
    assert main(["train", str(cfg)]) == 0
    assert main(["train", "--resume", str(run), "--set", "train.lr=1e-4", "--set", "train.max_steps=4",
                 "--allow-change", "train.lr", "--allow-change", "train.max_steps"]) == 0
    out = capsys.readouterr().out
    assert "train.lr changed from 0.001 to 0.0001 (allowed)" in out and "continuing from step-00000002" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["train"]["lr"], saved["train"]["max_steps"]) == (1e-4, 4)
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in r}
    assert lrs[3] == pytest.approx(1e-4 / 4)
    assert main(["train", str(cfg), "--allow-change", "train.lr"]) == 2
    assert "--allow-change applies only with --resume" in capsys.readouterr().err


def test_train_needs_a_config_or_a_run_dir(tmp_path: Path, capsys):
    assert main(["train"]) == 2
    assert "--resume RUN_DIR" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_no_checkpoint_notice_is_given_once(tiny_bert: Path, tmp_path: Path, capsys, caplog):
    cfg = _write_config(tmp_path, tiny_bert, max_steps=1)
    assert main(["train", str(cfg), "--resume"]) == 0
    out, err = capsys.readouterr()
    shown = (out + err).count("no checkpoint") + sum("no checkpoint" in r.getMessage() for r in caplog.records)
    assert shown == 1


def test_missing_dev_data_trains_without_evaluation_after_one_warning(tiny_bert: Path, tmp_path: Path, capsys):
    cfg = _write_config(tmp_path, tiny_bert, max_steps=2)
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert main(["train", str(cfg), "--set", "eval.tasks=[STSBenchmark-dev]", "--set", f"eval.data_dir={empty}"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out[out.index("{"):])["steps"] == 2
    warnings = [line for line in err.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, err
    for needle in ("STSBenchmark-dev", "training without evaluation", "--set eval.tasks=[]",
                   "--set eval.data_dir=DIR", "$CONTRASTKIT_DATA", str(empty)):
        assert needle in warnings[0]
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_version_flag(capsys):
    from contrastkit import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"contrastkit {__version__}"


def _parsers(parser, path=("contrastkit",)):
    import argparse

    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_has_help_and_help_shows_defaults():
    import argparse

    from contrastkit.cli import build_parser

    missing = []
    for name, parser in _parsers(build_parser()):
        if name.startswith("contrastkit index"):  # commands/index.py is being reworked elsewhere (issue 10, part 5)
            continue
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["eval"]._subparsers
                         ._group_actions[0].choices["sts"].format_help().split())
    assert "texts per forward pass (default: 128)" in help_text and "(default: fp32)" in help_text


def test_help_and_missing_data_error_agree_on_where_data_is_looked_for(tmp_path: Path, capsys, monkeypatch):
    from contrastkit.evaluation.senteval import DATA_SEARCH_ORDER

    monkeypatch.setenv("CONTRASTKIT_DATA", str(tmp_path))
    with pytest.raises(SystemExit):
        main(["eval", "sts", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert DATA_SEARCH_ORDER in help_text
    from contrastkit.evaluation.senteval import load_sts_task

    with pytest.raises(DataNotFoundError) as exc:
        load_sts_task("STSBenchmark-dev", data_dir=tmp_path, hub=False)
    message = " ".join(str(exc.value).split())
    assert DATA_SEARCH_ORDER in message and "Provide it with --data-dir DIR" in message
