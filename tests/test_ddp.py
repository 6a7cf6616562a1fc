"""Multi-process training with DistributedDataParallel (2 CPU processes, gloo, launched by torchrun).

The run under test: cross-device negatives with hard-negative columns, an uneven split of the global batch
(7 rows: 4 + 3, the epoch's last batch 2 + 1), gradient accumulation over 2 micro-batches and 3 optimizer
steps crossing an epoch boundary, launched as two torchrun "nodes" on localhost (``--nnodes 2`` with a c10d
rendezvous endpoint). It must end with the weights of one process training on the concatenated batches,
each rank must have read only its own disjoint rows, and a resume from a checkpoint must end the same. A run
through a step loss (``Trainer.for_step_loss``: each rank's loss over its own rows) must follow, and log, the
mean of the ranks' losses.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_sentences
from contrastkit.config import TrainConfig
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.losses import infonce
from contrastkit.samplers import (GroupedBatches, NoDuplicatesBatches, RandomBatches, ShardedBatches,
                                  StreamingBatches, split_sizes)
from contrastkit.training.trainer import Trainer
from contrastkit.views import embed_batch

WORKER = Path(__file__).with_name("ddp_worker.py")
_S = make_sentences(72, seed=11)
EXAMPLES = [Example(texts=(_S[i], _S[i + 24], _S[i + 48])) for i in range(24)]  # anchor, positive, hard negative
BATCH, SEED, ACCUM, STEPS = 7, 2, 2, 3
WEIGHT_ATOL = 1e-5
"""Largest allowed |DDP weight - one-process weight| after 3 AdamW steps at lr 1e-3 (float32; the two differ
only in the order of floating-point sums)."""


def loss_fn(a, p, n):
    # alpha != 1 weights only each anchor's OWN hard negative: a wrong label/column layout would show
    return infonce(a, p, n, temperature=0.05, hard_negative_weight=2.0)


def step_loss(model, batch):
    """The in-batch loss of one rank's rows, computed whole (as a cross-encoder's or an LM's step loss is)."""
    return loss_fn(*embed_batch(model, batch))


def two_rank_mean_loss(model, batch):
    """One process's stand-in for two ranks under DDP: the mean of the step losses of the batch's two shards."""
    rows, first = list(batch), split_sizes(len(batch), 2)[0]
    return (step_loss(model, rows[:first]) + step_loss(model, rows[first:])) / 2


def train_config(output_dir: Path) -> TrainConfig:
    return TrainConfig(output_dir=str(output_dir), batch_size=BATCH, grad_accumulation=ACCUM, lr=1e-3,
                       progress=False, max_steps=STEPS, precision="fp32", seed=1, log_every=1, checkpoint_every=2,
                       checkpoint_minutes=None)


class Recording(Sequence):
    """A list of examples that records which indices were read."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("read one example at a time")
        self.read.append(int(i))
        return self.items[i]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["random", "no_duplicates", "grouped", "streaming"])
def test_shards_are_disjoint_and_make_the_global_batch(kind: str):
    items = list(range(23))
    if kind == "random":
        src = RandomBatches(items, 7, seed=3)
    elif kind == "no_duplicates":
        src = NoDuplicatesBatches(items, 7, seed=3, texts_of=lambda x: (str(x % 20),))
    elif kind == "grouped":
        src = GroupedBatches(items, [i % 3 for i in items], 7, seed=3)
    else:
        src = StreamingBatches(lambda: iter(items), 7, seed=3, buffer_size=5)
    for epoch, start in ((0, 0), (1, 1)):  # from the start, and resumed at batch 1 of epoch 1
        shards = [list(ShardedBatches(src, r, 2).batches(epoch, start)) for r in range(2)]
        whole = list(src.batches(epoch, start))
        assert whole and all(len(s) == len(whole) for s in shards)
        for b, batch in enumerate(whole):
            parts = [shards[r][b] for r in range(2)]  # every batch has >= 2 rows
            assert [len(p) for p in parts] == split_sizes(len(batch), 2) == parts[0].sizes
            assert [x for p in parts for x in p] == list(batch)
            assert parts[1].offset == len(parts[0]) and parts[1].global_size == len(batch)


def test_a_rank_reads_only_its_rows():
    data = Recording(list(range(20)))
    batches = list(ShardedBatches(RandomBatches(data, 6, seed=0), 1, 2).batches(0))
    assert data.read == [x for b in batches for x in b]
    plan = list(RandomBatches(list(range(20)), 6, seed=0).index_batches(0))
    assert data.read == [int(i) for idx in plan for i in idx[split_sizes(len(idx), 2)[0]:]]


def test_two_nodes_ddp_match_one_process(tiny_bert: Path, tmp_path: Path):
    env = dict(os.environ, PYTHONPATH=str(WORKER.parent), OMP_NUM_THREADS="1")
    port = _free_port()
    procs = []
    t0 = time.perf_counter()
    for node in (0, 1):  # two torchrun agents ("nodes") meeting at a c10d rendezvous on localhost
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "ddp-test",
               "--rdzv-conf", f"is_host={int(node == 0)}", "--local-addr", "127.0.0.1", "--max-restarts", "0",
               str(WORKER), str(tiny_bert), str(tmp_path)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
    launch_s = time.perf_counter() - t0

    # one process, the same global batches, in-batch negatives (= cross-device over 1 rank)
    torch.manual_seed(0)
    ref = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    result = Trainer(ref, loss_fn, embed_batch, train_config(tmp_path / "single")).fit(
        RandomBatches(EXAMPLES, BATCH, seed=SEED))
    assert result.steps == STEPS
    want = ref.state_dict()

    trained = [load_file(str(tmp_path / f"trained-rank{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in want)  # ranks stay identical
    diff = max(float((trained[0][k] - want[k]).abs().max()) for k in want)
    start = Encoder.from_pretrained(str(tiny_bert)).state_dict()
    moved = max(float((trained[0][k] - start[k]).abs().max()) for k in want)
    print(f"launch {launch_s:.1f}s; max |DDP - one process| = {diff:.2e} (weights moved up to {moved:.2e})")
    assert moved > 1e-3  # the run really trained
    assert diff <= WEIGHT_ATOL

    dist_losses = [json.loads(ln)["loss"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert dist_losses == pytest.approx([r["loss"] for r in result.history], abs=1e-5)

    # each rank read exactly its own rows of every global batch: disjoint, together the one-process batches
    src = RandomBatches(EXAMPLES, BATCH, seed=SEED)
    plan = [idx for epoch in (0, 1) for idx in src.index_batches(epoch)][:STEPS * ACCUM]
    shards = [[[int(i) for i in idx[sum(split_sizes(len(idx), 2)[:r]):sum(split_sizes(len(idx), 2)[:r + 1])]]
               for idx in plan] for r in (0, 1)]
    read = [json.loads((tmp_path / f"read-rank{r}.json").read_text()) for r in (0, 1)]
    for r in (0, 1):
        assert read[r] == [i for s in shards[r] for i in s]
    epoch0 = len(list(src.index_batches(0)))
    first = [set(read[r][:sum(len(s) for s in shards[r][:epoch0])]) for r in (0, 1)]  # what each read in epoch 0
    assert not first[0] & first[1] and first[0] | first[1] == set(range(len(EXAMPLES)))

    # resumed from the step-2 checkpoint: the same weights as the uninterrupted run, on both ranks
    for r in (0, 1):
        resumed = load_file(str(tmp_path / f"resumed-rank{r}.safetensors"))
        assert all(torch.equal(resumed[k], trained[0][k]) for k in want), r

    # a step loss: DDP averages the ranks' gradients, so the run equals one process stepping on the mean of
    # the two shards' losses, and the logged loss is that mean (not rank 0's own)
    torch.manual_seed(0)
    ref = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    result = Trainer.for_step_loss(ref, two_rank_mean_loss, train_config(tmp_path / "step-single"),
                                   save=ref.save).fit(RandomBatches(EXAMPLES, BATCH, seed=SEED))
    stepped = [load_file(str(tmp_path / f"step-loss-rank{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(stepped[0][k], stepped[1][k]) for k in want)
    assert max(float((stepped[0][k] - ref.state_dict()[k]).abs().max()) for k in want) <= WEIGHT_ATOL
    assert max(float((stepped[0][k] - trained[0][k]).abs().max()) for k in want) > 1e-4  # not the other run
    logged = [json.loads(ln)["loss"] for ln in (tmp_path / "step-loss" / "metrics.jsonl").read_text().splitlines()]
    assert logged == pytest.approx([r["loss"] for r in result.history], abs=1e-5)
