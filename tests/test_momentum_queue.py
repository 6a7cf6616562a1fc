"""Momentum queue (MoCo): FIFO ring buffer, EMA key encoder, queued keys as negatives, exact resume."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from conftest import make_sentences
from contrastkit.config import TrainConfig
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.losses import infonce
from contrastkit.samplers import RandomBatches
from contrastkit.training.batch import as_embedded
from contrastkit.training.checkpoint import latest_checkpoint
from contrastkit.training.negatives import MomentumQueueNegatives
from contrastkit.training.negatives.momentum import KeyQueue, append_queue, filter_keys
from contrastkit.training.trainer import Trainer
from contrastkit.views import embed_batch


def _loss(a, p, n):
    return infonce(a, p, n, temperature=0.05)


def _embed(enc, batch):
    return as_embedded(embed_batch(enc, batch)).float()


def _rows(*values: float) -> torch.Tensor:
    return torch.tensor([[v, -v] for v in values])


def test_queue_is_fifo_and_wraps_around():
    q = KeyQueue(5)
    assert q.keys() is None
    q.push(_rows(0, 1, 2))
    assert torch.equal(q.keys(), _rows(0, 1, 2))
    q.push(_rows(3, 4, 5))  # 0 is overwritten
    assert torch.equal(q.keys(), _rows(1, 2, 3, 4, 5))
    assert q.ptr == 1 and q.count == 5
    q.push(_rows(6))
    assert torch.equal(q.keys(), _rows(2, 3, 4, 5, 6))
    q.push(_rows(7, 8, 9, 10, 11, 12, 13))  # more than the queue holds: the newest 5 stay
    assert torch.equal(q.keys(), _rows(9, 10, 11, 12, 13))
    r = KeyQueue(5)
    r.load_state_dict(q.state_dict())
    r.push(_rows(14))
    q.push(_rows(14))
    assert torch.equal(r.keys(), q.keys())


def test_filter_and_layout_by_hand():
    keys = torch.tensor([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    anchors = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    # cosines to anchor 0: 0.995, 0, -1; to anchor 1: -0.0995, -1, 0 -> only key 0 exceeds 0.5
    assert torch.equal(filter_keys(keys, anchors, 0.5), keys[1:])
    assert torch.equal(filter_keys(keys, anchors, None), keys)
    # 5 usable keys, 2 anchors: the newest 4 are spread over the rows after each row's hard negative
    q = torch.arange(10.0).view(5, 2)
    hard = torch.full((2, 1, 2), -1.0)
    out = append_queue(hard, q, 2)
    assert out.shape == (2, 3, 2)
    assert torch.equal(out[:, 1:].reshape(-1, 2), q[1:])
    assert torch.equal(out[:, :1], hard)
    assert append_queue(None, q[:1], 2) is None  # fewer keys than anchors: nothing appended


def test_ema_update_and_enqueue_step_by_step(tiny_bert: Path):
    torch.manual_seed(0)
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    enc.train()
    src = MomentumQueueNegatives(queue_size=6, momentum=0.9)
    src.setup(enc)
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    sents = make_sentences(9, seed=3)
    batches = [[Example(texts=(t,)) for t in sents[i:i + 3]] for i in (0, 3, 6)]
    enqueued: list[torch.Tensor] = []
    for step, batch in enumerate(batches):
        key_before = copy.deepcopy(src.key_encoder)
        with torch.no_grad():
            expected_keys = _embed(key_before, batch).positive
            anchors = _embed(enc, batch).anchor
        queued = torch.cat(enqueued[-2:]) if enqueued else None
        expected_loss = _loss(anchors, expected_keys,
                              None if queued is None else queued[-(queued.shape[0] // 3) * 3:].view(3, -1, anchors.shape[1]))
        opt.zero_grad()
        loss = src.loss_and_backward(enc, batch, _embed, _loss, 1.0)
        assert loss == pytest.approx(float(expected_loss), abs=1e-5)
        opt.step()
        src.after_optimizer_step(enc)
        enqueued.append(expected_keys)
        # EMA: theta_k <- 0.9 theta_k + 0.1 theta_q (computed by hand on the named weights)
        for (name, pk), pk0, pq in zip(src.key_encoder.named_parameters(), key_before.parameters(), enc.parameters()):
            assert torch.allclose(pk, 0.9 * pk0 + 0.1 * pq.detach(), atol=1e-6), name
        assert not any(p.requires_grad for p in src.key_encoder.parameters())
        expected_queue = torch.cat(enqueued)[-6:]  # queue of 6 = the last two batches, oldest first
        assert torch.allclose(src.queue.keys(), expected_queue, atol=1e-6), step
    assert src.queue.ptr == 3 and src.queue.count == 6  # wrapped around once


def test_resume_restores_key_encoder_and_queue_exactly(tiny_bert: Path, tmp_path: Path):
    exs = [Example(texts=(t,)) for t in make_sentences(32, seed=2)]
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), batch_size=4, lr=1e-3, progress=False, max_steps=4,
                      precision="fp32", seed=5, checkpoint_every=1, keep_checkpoints=10, log_every=1)

    def run(resume: bool):
        torch.manual_seed(0)
        enc = Encoder.from_pretrained(str(tiny_bert))  # dropout 0.1 active: the RNG must be restored too
        src = MomentumQueueNegatives(queue_size=10, momentum=0.8, filter_threshold=0.95)
        Trainer(enc, _loss, embed_batch, cfg, negatives=src).fit(RandomBatches(exs, 4, seed=1), resume=resume)
        return enc, src

    enc_a, src_a = run(False)
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "latest").write_text("step-00000002\n")
    assert latest_checkpoint(ckpts).name == "step-00000002"
    enc_b, src_b = run(True)
    for (name, a), b in zip(enc_a.state_dict().items(), enc_b.state_dict().values()):
        assert torch.equal(a, b), name
    for (name, a), b in zip(src_a.key_encoder.state_dict().items(), src_b.key_encoder.state_dict().values()):
        assert torch.equal(a, b), name
    assert src_a.queue.count == 10 and torch.equal(src_a.queue.keys(), src_b.queue.keys())


def test_config_checks_for_negative_sources():
    from contrastkit.config import build_config
    from contrastkit.errors import ConfigError

    base = {"data": {"source": "x.txt"}, "model": {"backbone": "m"}, "train": {"batch_size": 8}}
    ok = build_config(base | {"negatives": {"source": "momentum_queue", "queue_size": 64, "filter_threshold": 0.9}})
    assert ok.negatives.queue_size == 64
    assert build_config(base | {"negatives": {"source": "cached", "chunk_size": 4}}).negatives.chunk_size == 4
    bad = [
        ({"source": "cached"}, {}, "needs negatives.chunk_size"),
        ({"source": "cached", "chunk_size": 8}, {}, "smaller than train.batch_size"),
        ({"source": "in_batch", "queue_size": 64}, {}, "applies only to source 'momentum_queue'"),
        ({"source": "momentum_queue"}, {"name": "cosent"}, "does not take them"),
        ({"source": "momentum_queue"}, {"hard_negative_weight": 2.0}, "hard_negative_weight"),
    ]
    for negatives, loss, message in bad:
        with pytest.raises(ConfigError, match=message):
            build_config(base | {"negatives": negatives, "loss": loss})
