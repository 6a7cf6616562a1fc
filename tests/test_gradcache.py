"""GradCache (cached negatives): parameter gradients equal the full batch's, with dropout replayed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import make_sentences
from contrastkit.config import TrainConfig
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.encoders.encoder import autocast
from contrastkit.losses import infonce
from contrastkit.samplers import RandomBatches
from contrastkit.training.batch import as_embedded
from contrastkit.training.negatives import CachedNegatives, InBatchNegatives
from contrastkit.training.negatives.gradcache import concat_embedded
from contrastkit.training.trainer import Trainer
from contrastkit.views import embed_batch


def _loss(a, p, n):
    return infonce(a, p, n, temperature=0.05)


def _embed(precision: str = "fp32"):
    def embed(enc, batch):
        with autocast(precision, enc.device):
            out = as_embedded(embed_batch(enc, batch))
        return out.float()
    return embed


def _singles(n: int = 10) -> list[Example]:
    return [Example(texts=(t,)) for t in make_sentences(n, seed=7)]


def _triplets(n: int = 10) -> list[Example]:
    s = make_sentences(3 * n, seed=8)
    return [Example(texts=(s[3 * i], s[3 * i + 1], s[3 * i + 2])) for i in range(n)]


def _grads(enc: Encoder) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in enc.named_parameters() if p.grad is not None}


def _full_graph(enc: Encoder, batch, chunk: int, seed: int, precision: str = "fp32"):
    """Reference: the full-batch loss through one autograd graph (chunks forwarded in the same order)."""
    enc.zero_grad()
    torch.manual_seed(seed)
    embed = _embed(precision)
    full = concat_embedded([embed(enc, batch[i:i + chunk]) for i in range(0, len(batch), chunk)])
    loss = full.loss(_loss)
    loss.backward()
    return float(loss.detach()), _grads(enc)


def _cached(enc: Encoder, batch, chunk: int, seed: int, precision: str = "fp32", scale: float = 1.0):
    enc.zero_grad()
    torch.manual_seed(seed)
    loss = CachedNegatives(chunk).loss_and_backward(enc, batch, _embed(precision), _loss, scale)
    return loss, _grads(enc)


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max())


@pytest.mark.parametrize("kind", ["dropout_views", "triplets"])
def test_gradients_equal_full_batch_with_dropout_replayed(tiny_bert: Path, kind: str):
    batch = _singles() if kind == "dropout_views" else _triplets()
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.1)
    enc.train()
    ref_loss, ref = _full_graph(enc, batch, chunk=3, seed=11)
    loss, got = _cached(enc, batch, chunk=3, seed=11)
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    _assert_close(got, ref, 1e-5)
    # dropout really is active: another seed (other masks) gives other gradients
    _, other = _full_graph(enc, batch, chunk=3, seed=12)
    assert max((other[k] - ref[k]).abs().max().item() for k in ref) > 1e-4
    # and the random stream after the step is where one pass over the batch leaves it
    torch.manual_seed(11)
    with torch.no_grad():
        for i in range(0, len(batch), 3):
            _embed()(enc, batch[i:i + 3])
    expected_next = torch.rand(1)
    _cached(enc, batch, chunk=3, seed=11)
    assert torch.equal(torch.rand(1), expected_next)


def test_bf16_autocast_gradients_match_too(tiny_bert: Path):
    batch = _singles(8)
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.1)
    enc.train()
    ref_loss, ref = _full_graph(enc, batch, chunk=4, seed=3, precision="bf16")
    loss, got = _cached(enc, batch, chunk=4, seed=3, precision="bf16")
    assert loss == pytest.approx(ref_loss, abs=1e-4)
    _assert_close(got, ref, 1e-4)


@pytest.mark.parametrize("kind", ["dropout_views", "triplets"])
def test_without_dropout_equals_one_uncached_forward(tiny_bert: Path, kind: str):
    batch = _singles() if kind == "dropout_views" else _triplets()
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    enc.train()
    enc.zero_grad()
    ref_loss = InBatchNegatives().loss_and_backward(enc, batch, _embed(), _loss, 1.0)
    ref = _grads(enc)
    loss, got = _cached(enc, batch, chunk=4, seed=0)
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    _assert_close(got, ref, 1e-5)


def test_accumulates_like_the_in_batch_source(tiny_bert: Path):
    """Two micro-batches at scale 1/2 sum into .grad exactly as the uncached source does."""
    batches = [_triplets(6), _triplets(12)[6:]]
    enc = Encoder.from_pretrained(str(tiny_bert), dropout=0.0)
    enc.train()
    enc.zero_grad()
    for b in batches:
        InBatchNegatives().loss_and_backward(enc, b, _embed(), _loss, 0.5)
    ref = _grads(enc)
    enc.zero_grad()
    for b in batches:
        CachedNegatives(4).loss_and_backward(enc, b, _embed(), _loss, 0.5)
    _assert_close(_grads(enc), ref, 1e-5)


def test_trainer_runs_with_cached_source_and_accumulation(tiny_bert: Path, tmp_path: Path):
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), batch_size=8, grad_accumulation=2, lr=1e-3, progress=False,
                      max_steps=2, precision="fp32", seed=1, log_every=1)
    enc = Encoder.from_pretrained(str(tiny_bert))
    before = enc.backbone.embeddings.word_embeddings.weight.detach().clone()
    result = Trainer(enc, _loss, embed_batch, cfg, negatives=CachedNegatives(3)).fit(
        RandomBatches(_singles(40), 8, seed=1))
    assert result.steps == 2
    assert not torch.equal(before, enc.backbone.embeddings.word_embeddings.weight)
