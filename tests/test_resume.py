"""A run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_sentences

WORKER = Path(__file__).with_name("resume_worker.py")


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(WORKER.parent), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.parametrize("timed, lora", [("", ""), ("0.004", ""), ("", "1")],
                         ids=["step_checkpoints", "time_checkpoints", "lora_adapters"])
def test_sigkill_then_resume_matches_uninterrupted(tiny_bert: Path, tmp_path: Path, timed: str, lora: str):
    """Killed mid-run and resumed: bit-identical weights. ``time_checkpoints``: checkpoint_every is past the
    end of the run, so only the time-based checkpoint (train.checkpoint_minutes) saves the killed run.
    ``lora_adapters``: LoRA adapters (with dropout) train and resume exactly, their merged weights compared."""
    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(60, seed=1)) + "\n")  # 60/8 -> 8 batches/epoch, 16 steps

    ref = tmp_path / "ref"
    p = _run([str(tiny_bert), str(data), str(ref), "0", "0", timed, lora])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out

    run = tmp_path / "killed"
    p = _run([str(tiny_bert), str(data), str(run), "0", "0.15", timed, lora])
    latest = run / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline:
        if latest.is_file() and latest.read_text().strip() >= "step-00000006":
            break
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "model").exists()
    killed_at = latest.read_text().strip()
    assert killed_at < "step-00000016"

    p = _run([str(tiny_bert), str(data), str(run), "1", "0", timed, lora])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert f"continuing from {killed_at}" in out

    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    head_a = load_file(str(ref / "model" / "contrastkit_head.safetensors"))
    head_b = load_file(str(run / "model" / "contrastkit_head.safetensors"))
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)


def test_resume_without_checkpoint_says_so(tiny_bert: Path, tmp_path: Path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(make_sentences(20)) + "\n")
    p = _run([str(tiny_bert), str(data), str(tmp_path / "fresh"), "1", "0"])
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert "no checkpoint found" in out
    assert out.lower().count("no checkpoint") == 1, out  # one notice, not a log line and a print
