"""Streaming sharded encode: shards equal one in-memory encode, survive SIGKILL, split over workers and ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_sentences
from contrastkit.cli import main
from contrastkit.encoders import Encoder
from contrastkit.encoding import encode_sharded, load_shards, run_sharded
from contrastkit.errors import ConfigError, DataError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def enc(tiny_bert: Path) -> Encoder:
    return Encoder.from_pretrained(str(tiny_bert))


def _write_text(path: Path, texts: list[str], blank_every: int = 0) -> Path:
    lines = []
    for i, t in enumerate(texts):
        lines.append(t)
        if blank_every and i % blank_every == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_shards_equal_one_in_memory_encode(enc: Encoder, tmp_path: Path):
    texts = make_sentences(50, seed=1)
    src = _write_text(tmp_path / "in.txt", texts, blank_every=7)
    res = encode_sharded(enc, src, tmp_path / "out", shard_size=16, show_progress=False)
    assert (res.num_shards, res.total_rows, res.rows_encoded, res.complete) == (4, 50, 50, True)
    names = sorted(p.name for p in (tmp_path / "out").glob("shard-*.npy") if ".rows" not in p.name)
    assert names == [f"shard-{i:05d}.npy" for i in range(4)]
    np.testing.assert_allclose(load_shards(tmp_path / "out"), enc.encode(texts), atol=1e-5)
    # every vector leads back to its line (blank lines are skipped, so line numbers drift from row numbers)
    rows = np.concatenate([np.load(tmp_path / "out" / f"shard-{i:05d}.rows.npy") for i in range(4)])
    lines = (tmp_path / "in.txt").read_text().split("\n")
    assert [lines[line - 1] for _, line in rows] == texts
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["completed"]["shard-00003"]["rows"] == 2


def test_jsonl_and_directory_input(enc: Encoder, tmp_path: Path):
    texts = make_sentences(12, seed=2)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.jsonl").write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in
                                                    enumerate(texts[:5])))
    _write_text(tmp_path / "d" / "sub" / "b.txt", texts[5:])
    res = encode_sharded(enc, tmp_path / "d", tmp_path / "out", shard_size=5, text_field="body",
                         show_progress=False)
    assert res.total_rows == 12 and res.complete
    np.testing.assert_allclose(load_shards(tmp_path / "out"), enc.encode(texts), atol=1e-5)


def _cli(model: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", "--model", str(model), "--input", str(src), "--output", str(out), "--no-progress",
            "--batch-size", "4", *extra]


def test_sigkill_then_resume_gives_identical_output(tiny_bert: Path, tmp_path: Path):
    src = _write_text(tmp_path / "in.txt", make_sentences(600, seed=3))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "contrastkit.cli", *_cli(tiny_bert, src, out, "--shard-size", "15")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (out / "shard-00002.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "no shard written in 60 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"]  # killed mid-run
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.npy")}

    assert main(_cli(tiny_bert, src, out, "--shard-size", "15")) == 2  # refuses to overwrite without --resume
    assert main(_cli(tiny_bert, src, out, "--shard-size", "15", "--resume")) == 0
    assert main(_cli(tiny_bert, src, tmp_path / "clean", "--shard-size", "15")) == 0
    np.testing.assert_array_equal(load_shards(out), load_shards(tmp_path / "clean"))
    for i in range(40):
        np.testing.assert_array_equal(np.load(out / f"shard-{i:05d}.rows.npy"),
                                      np.load(tmp_path / "clean" / f"shard-{i:05d}.rows.npy"))
    # completed shards were verified and kept, not re-encoded
    assert all((out / name).stat().st_mtime_ns == t for name, t in kept.items() if (out / name.replace(
        ".npy", ".json")).exists() and not name.endswith(".rows.npy"))
    # a resume with other settings is refused
    assert main(_cli(tiny_bert, src, out, "--shard-size", "16", "--resume")) == 2


def test_resume_reencodes_a_shard_whose_row_count_is_wrong(enc: Encoder, tmp_path: Path):
    src = _write_text(tmp_path / "in.txt", make_sentences(20, seed=4))
    encode_sharded(enc, src, tmp_path / "out", shard_size=8, show_progress=False)
    np.save(tmp_path / "out" / "shard-00001.npy", np.zeros((3, enc.dim), np.float32))  # truncated shard
    res = encode_sharded(enc, src, tmp_path / "out", shard_size=8, resume=True, show_progress=False)
    assert (res.shards_written, res.shards_skipped) == (1, 2)
    np.testing.assert_allclose(load_shards(tmp_path / "out"), enc.encode(make_sentences(20, seed=4)), atol=1e-5)


def test_two_workers_equal_one(tiny_bert: Path, tmp_path: Path):
    src = _write_text(tmp_path / "in.txt", make_sentences(40, seed=5))
    one = run_sharded(str(tiny_bert), src, tmp_path / "w1", workers=1, shard_size=6, show_progress=False)
    two = run_sharded(str(tiny_bert), src, tmp_path / "w2", workers=2, shard_size=6, show_progress=False)
    assert one.complete and two.complete and two.shards_written == one.shards_written == 7
    np.testing.assert_array_equal(load_shards(tmp_path / "w1"), load_shards(tmp_path / "w2"))


def test_rank_split_covers_each_shard_exactly_once(enc: Encoder, tmp_path: Path, monkeypatch):
    texts = make_sentences(35, seed=6)
    src = _write_text(tmp_path / "in.txt", texts)
    out = tmp_path / "out"
    owners: dict[int, int] = {}
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))  # torchrun's variables
        monkeypatch.setenv("WORLD_SIZE", "3")
        before = set(out.glob("shard-*.json")) if out.exists() else set()
        res = encode_sharded(enc, src, out, shard_size=4, show_progress=False)
        new = {int(p.stem.split("-")[1]) for p in set(out.glob("shard-*.json")) - before}
        assert all(i % 3 == rank for i in new) and not (new & owners.keys())
        owners.update({i: rank for i in new})
        assert res.complete == (rank == 2)
    assert sorted(owners) == list(range(9))
    np.testing.assert_allclose(load_shards(out), enc.encode(texts), atol=1e-5)
    with pytest.raises(ConfigError, match="rank"):
        encode_sharded(enc, src, tmp_path / "x", rank=3, world_size=3, show_progress=False)


def test_bad_line_names_file_and_line(tiny_bert: Path, tmp_path: Path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "a dog"}\n{"text": "the cat"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON"):
        encode_sharded(str(tiny_bert), src, tmp_path / "out", shard_size=2, show_progress=False)
    assert main(_cli(tiny_bert, src, tmp_path / "out2")) == 2
    err = capsys.readouterr().err
    assert f"{src}:3:" in err and "Traceback" not in err
    src.write_text('{"text": "a dog"}\n{"body": "the cat"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: .*lacks key 'text'"):
        encode_sharded(str(tiny_bert), src, tmp_path / "out3", show_progress=False)


def test_single_npy_output_rejects_shard_flags(tiny_bert: Path, tmp_path: Path, capsys):
    src = _write_text(tmp_path / "in.txt", ["a dog", "the cat"])
    assert main(_cli(tiny_bert, src, tmp_path / "x.npy", "--resume")) == 2
    assert "output directory" in capsys.readouterr().err
    assert main(_cli(tiny_bert, src, tmp_path / "x.npy", "--dtype", "float16")) == 0
    assert np.load(tmp_path / "x.npy").dtype == np.float16
