"""Cross-device negatives under torchrun (2 CPU processes, gloo) equal one process with the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_sentences
from contrastkit.config import TrainConfig
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.errors import ConfigError
from contrastkit.losses import infonce
from contrastkit.samplers import RandomBatches
from contrastkit.training.batch import as_embedded
from contrastkit.training.negatives import CrossDeviceNegatives, InBatchNegatives
from contrastkit.training.negatives.cross_device import split_sizes
from contrastkit.training.trainer import Trainer
from contrastkit.views import embed_batch

WORKER = Path(__file__).with_name("cross_device_worker.py")
_S = make_sentences(21, seed=9)
# 7 rows: rank 0 embeds 4, rank 1 embeds 3 (uneven split)
BATCHES = {
    "singles": [Example(texts=(t,)) for t in _S[:7]],
    "pairs": [Example(texts=(_S[i], _S[i + 7])) for i in range(7)],
    "triplets": [Example(texts=(_S[i], _S[i + 7], _S[i + 14])) for i in range(7)],
}


def embed(enc, batch):
    return as_embedded(embed_batch(enc, batch)).float()


def loss_fn(a, p, n):
    # alpha != 1 weights only each anchor's OWN hard negative: wrong labels/layout would show
    return infonce(a, p, n, temperature=0.05, hard_negative_weight=2.0)


def test_split_sizes():
    assert split_sizes(7, 2) == [4, 3]
    assert split_sizes(8, 3) == [3, 3, 2]


def test_needs_a_distributed_launch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        CrossDeviceNegatives()


def test_two_processes_match_one_process(tiny_bert: Path, tmp_path: Path):
    env = dict(os.environ, PYTHONPATH=str(WORKER.parent), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(tiny_bert), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    torch.manual_seed(0)
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    enc.train()
    for kind, batch in BATCHES.items():
        enc.zero_grad()
        ref_loss = InBatchNegatives().loss_and_backward(enc, batch, embed, loss_fn, 1.0)
        ref = {k: p.grad for k, p in enc.named_parameters() if p.grad is not None}
        for rank in (0, 1):
            loss = json.loads((tmp_path / f"losses-rank{rank}.json").read_text())[kind]
            assert loss == pytest.approx(ref_loss, abs=1e-5), (kind, rank)
            got = load_file(str(tmp_path / f"{kind}-rank{rank}.safetensors"))
            assert got.keys() == ref.keys()
            for k in ref:
                assert torch.allclose(got[k], ref[k], atol=1e-5, rtol=0), (kind, rank, k)

    # the trainer under torchrun: ranks stay in sync, only rank 0 writes, losses equal one process
    a = load_file(str(tmp_path / "trained-rank0.safetensors"))
    b = load_file(str(tmp_path / "trained-rank1.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    run = tmp_path / "run"
    assert (run / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000002", "step-00000003"]
    dist_losses = [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    cfg = TrainConfig(output_dir=str(tmp_path / "single"), batch_size=6, lr=1e-3, progress=False, max_steps=3,
                      precision="fp32", seed=1, log_every=1, checkpoint_every=1)
    torch.manual_seed(0)
    result = Trainer(Encoder.from_pretrained(str(tiny_bert), dropout=0.0), loss_fn, embed_batch, cfg).fit(
        RandomBatches(BATCHES["triplets"] * 3, 6, seed=2))
    assert dist_losses == pytest.approx([r["loss"] for r in result.history], abs=1e-4)
    assert len(dist_losses) == 3
