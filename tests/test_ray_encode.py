"""Ray Data encoding (real Ray, a local instance, 2 actors): the vectors, ids and order of ``contrastkit encode``;
resumes after a SIGKILLed driver without recomputing finished shards; survives a SIGKILLed actor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_sentences

pytest.importorskip("ray.data")
psutil = pytest.importorskip("psutil")

from contrastkit.cli import main  # noqa: E402
from contrastkit.encoding import load_shards  # noqa: E402
from contrastkit.encoding.ray_engine import encode_ray  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
RAY_CAPS = {"workers": 2, "object_store_mb": 200, "show_progress": False}


@pytest.fixture(autouse=True)
def _no_ray_left_behind():
    """Every test ends with no Ray process of this session running (the runs stop the Ray they start)."""
    yield
    leftover = [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]
    for p in leftover:
        p.kill()
    assert not leftover, [p.pid for p in leftover]


def _is_ray(p: psutil.Process) -> bool:
    try:
        return any("ray" in part for part in p.cmdline()[:3])
    except psutil.Error:
        return False


def _write(path: Path, n: int, seed: int) -> Path:
    path.write_text("\n".join(make_sentences(n, seed=seed)) + "\n")
    return path


def _cli(model: Path, src: Path, out: Path, *extra: str) -> list[str]:
    return ["encode", "--model", str(model), "--input", str(src), "--output", str(out), "--no-progress",
            "--batch-size", "4", *extra]


def _rows(out: Path) -> np.ndarray:
    n = json.loads((out / "manifest.json").read_text())["num_shards"]
    return np.concatenate([np.load(out / f"shard-{i:05d}.rows.npy") for i in range(n)])


def _assert_same(ray_out: Path, local_out: Path) -> None:
    """Same ids (file, line of every row) in the same order, and cosine >= 0.9999 row by row."""
    a, b = load_shards(ray_out), load_shards(local_out)
    assert a.shape == b.shape
    np.testing.assert_array_equal(_rows(ray_out), _rows(local_out))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.9999, cos.min()


def test_ray_cli_gives_the_vectors_of_contrastkit_encode(tiny_bert: Path, tmp_path: Path):
    src = _write(tmp_path / "in.txt", 120, seed=11)
    assert main(_cli(tiny_bert, src, tmp_path / "local", "--shard-size", "16")) == 0
    assert main(_cli(tiny_bert, src, tmp_path / "ray", "--shard-size", "16", "--engine", "ray", "--workers", "2",
                     "--ray-object-store-mb", "200")) == 0
    _assert_same(tmp_path / "ray", tmp_path / "local")
    settings = [json.loads((tmp_path / d / "encode_settings.json").read_text()) for d in ("local", "ray")]
    assert settings[0] == settings[1]  # the engines can resume each other's output
    assert main(_cli(tiny_bert, src, tmp_path / "ray", "--shard-size", "16", "--engine", "ray")) == 2  # no --resume
    assert main(_cli(tiny_bert, src, tmp_path / "x", "--engine", "ray", "--rank", "1")) == 2


def test_resume_after_a_killed_driver_only_encodes_the_rest(tiny_bert: Path, tmp_path: Path):
    src = _write(tmp_path / "in.txt", 600, seed=12)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "contrastkit.cli", *_cli(tiny_bert, src, out, "--shard-size", "10", "--engine",
                                                          "ray", "--workers", "2", "--ray-object-store-mb", "200")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    driver = psutil.Process(proc.pid)
    deadline = time.time() + 300
    while not (out / "shard-00003.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no shard written in 300 s"
        time.sleep(0.01)
    family = driver.children(recursive=True)  # its Ray: gcs, raylet, actors
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(family, timeout=60)
    names = {p.pid: " ".join(p.cmdline()[:1]) for p in alive if p.is_running()}
    for p in alive:  # never leave one behind
        p.kill()
    # Ray's core (gcs_server, raylet, the actors) dies with its driver; its idle agents may not (killed above)
    assert not [n for n in names.values() if "Agent" not in n], names
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest.get("complete")
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*") if (out / p.name.split(".")[0]).with_suffix(
        ".json").exists()}
    n_kept = len({name.split(".")[0] for name in kept})
    assert 4 <= n_kept < 60

    res = encode_ray(str(tiny_bert), src, out, shard_size=10, batch_size=4, resume=True, **RAY_CAPS)
    assert res.complete and (res.shards_skipped, res.shards_written) == (n_kept, 60 - n_kept)
    assert res.rows_encoded == 600 - 10 * n_kept
    assert all((out / name).stat().st_mtime_ns == t for name, t in kept.items())  # finished shards not redone
    assert main(_cli(tiny_bert, src, tmp_path / "local", "--shard-size", "10")) == 0
    _assert_same(out, tmp_path / "local")


def test_a_killed_actor_is_restarted_and_the_output_is_complete(tiny_bert: Path, tmp_path: Path):
    src = _write(tmp_path / "in.txt", 1200, seed=13)
    out = tmp_path / "ray"
    killed: list[int] = []

    def kill_an_actor() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "shard-00002.json").exists():
            time.sleep(0.01)
        for p in psutil.Process().children(recursive=True):
            try:
                if "EncodeActor" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
                    return
            except psutil.Error:
                continue

    killer = threading.Thread(target=kill_an_actor, daemon=True)
    killer.start()
    res = encode_ray(str(tiny_bert), src, out, shard_size=10, batch_size=4, **RAY_CAPS)
    killer.join(timeout=10)
    assert killed, "no actor was found to kill"
    assert res.complete and res.shards_written == 120 and res.rows_encoded == 1200
    assert main(_cli(tiny_bert, src, tmp_path / "local", "--shard-size", "10")) == 0
    _assert_same(out, tmp_path / "local")
