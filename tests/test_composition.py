"""Composing views, loss inputs, samplers and mining through the config: validation and behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import make_sentences
from contrastkit.config import build_config
from contrastkit.data import Example
from contrastkit.encoders import Encoder
from contrastkit.errors import ConfigError
from contrastkit.losses import cosent, dclr, infonce
from contrastkit.losses._common import cosine_matrix
from contrastkit.losses.inputs import with_inputs
from contrastkit.views.compose import ViewEmbedder
from contrastkit.views.self_guided import SelfGuidedView

BASE = {"data": {"source": "x.txt"}, "model": {"backbone": "m"}}
PAIRS = {"source": "x.jsonl", "kind": "pair"}
TEACHER = {"model": "t"}


def cfg(**sections):
    return build_config({**BASE, **sections})


REJECTED = [
    ({"views": {"name": "word_deletion", "ratio": 0.1}}, r"unknown key 'ratio' for view 'word_deletion'"),
    ({"views": {"name": "nope"}}, "unknown view 'nope'"),
    ({"views": {"name": "dropout", "apply_to": "both"}}, "apply_to does not apply"),
    ({"views": {"name": "span_sampling", "num_views": 3}}, "exactly one"),
    ({"data": PAIRS, "views": {"name": "token_cutoff"}}, "single texts"),
    ({"views": {"num_views": 3}, "loss": {"name": "triplet"}}, "poly-view"),
    ({"views": {"num_views": 3}, "negatives": {"source": "cached", "chunk_size": 8}}, "in_batch"),
    ({"data": PAIRS, "loss": {"name": "cosent"}}, "data.kind 'scored'"),
    ({"data": {**PAIRS, "kind": "scored"}}, "does not use them"),
    ({"loss": {"name": "dclr"}}, "reference encoder.*teacher.model"),
    ({"loss": {"name": "mse_distill"}}, "teacher.model"),
    ({"teacher": TEACHER}, "nothing uses it"),
    ({"teacher": {"model": "t", "false_negative_threshold": 0.5}, "loss": {"name": "dclr"}}, "bidirectional_margin"),
    ({"teacher": TEACHER, "loss": {"name": "dclr"}, "negatives": {"source": "momentum_queue"}}, "queued keys"),
    ({"loss": {"name": "non_contrastive"}}, "EMA target network"),
    ({"loss": {"name": "triplet", "temperature": 0.1}}, "has no temperature"),
    ({"loss": {"name": "triplet"}}, "hard negative per example"),
    ({"data": {**PAIRS, "kind": "scored"}, "loss": {"name": "cosent", "scores": [1]}}, "pipeline supplies"),
    ({"sampler": {"name": "single_source"}}, "list of two or more"),
    ({"sampler": {"name": "clustered"}}, "teacher.model"),
    ({"sampler": {"name": "random", "num_clusters": 4}}, "applies only to sampler clustered"),
    ({"views": {"name": "dropout", "apply_to": "both"}, "sampler": {"name": "random"}}, "apply_to does not apply"),
    ({"data": {"source": "x.txt", "streaming": True}, "sampler": {"name": "clustered"}, "teacher": TEACHER},
     "in memory"),
    ({"data": PAIRS, "mining": {}}, "teacher.model"),
    ({"teacher": TEACHER, "mining": {}}, "data.kind must be 'pair'"),
    ({"data": PAIRS, "teacher": TEACHER, "mining": {"rank_window": [5, 2]}}, "rank_window"),
    ({"data": PAIRS, "teacher": TEACHER, "mining": {}, "loss": {"name": "align_uniform"}}, "takes none"),
]


@pytest.mark.parametrize("sections,message", REJECTED, ids=[m for _, m in REJECTED])
def test_impossible_combinations_are_rejected_at_load(sections, message):
    with pytest.raises(ConfigError, match=message):
        cfg(**sections)


def test_accepted_compositions():
    c = cfg(views={"name": "word_repetition", "dup_rate": 0.2, "num_views": 3})
    assert c.views.params == {"dup_rate": 0.2} and c.views.num_views == 3
    cfg(data={**PAIRS, "kind": "scored"}, loss={"name": "cosent"})
    cfg(teacher=TEACHER, loss={"name": "dclr", "num_noise": 4})
    cfg(data={"source": ["a.txt", "b.txt"]}, sampler={"name": "single_source", "groups_per_batch": 2})
    cfg(data=PAIRS, teacher=TEACHER, mining={"rank_window": [2, 20], "num_negatives": 2})


@pytest.fixture(scope="module")
def encoder(tiny_bert: Path) -> Encoder:
    torch.set_num_threads(1)
    return Encoder.from_pretrained(str(tiny_bert), pooling="cls", max_length=16).eval()


EXAMPLES = [Example((t,)) for t in make_sentences(6, seed=1)]


def test_text_edit_views_follow_the_global_seed_and_keep_the_anchor(encoder: Encoder):
    embed = ViewEmbedder("word_deletion", {"p": 0.5})
    torch.manual_seed(0)
    a = embed(encoder, EXAMPLES)
    torch.manual_seed(0)
    b = embed(encoder, EXAMPLES)
    c = embed(encoder, EXAMPLES)  # next step: a new draw
    assert torch.equal(a.positive, b.positive) and not torch.equal(b.positive, c.positive)
    plain = encoder.embed_texts([e.texts[0] for e in EXAMPLES]).float()
    assert torch.allclose(a.anchor, plain, atol=1e-5)  # apply_to: positive leaves the anchor alone
    both = ViewEmbedder("word_deletion", {"p": 0.5}, apply_to="both")(encoder, EXAMPLES)
    assert not torch.allclose(both.anchor, plain, atol=1e-5)


def test_cutoff_views_and_poly_view_extras(encoder: Encoder):
    out = ViewEmbedder("feature_cutoff", {"ratio": 0.5}, num_views=4)(encoder, EXAMPLES)
    assert out.extras["extra_positives"].shape == (6, 2, encoder.dim)
    plain = encoder.embed_texts([e.texts[0] for e in EXAMPLES]).float()
    assert torch.allclose(out.anchor, plain, atol=1e-5) and not torch.allclose(out.positive, plain, atol=1e-3)


def test_self_guided_positive_is_the_frozen_copys_pooled_layer(encoder: Encoder):
    sg = SelfGuidedView(encoder, layer=1, layer_pooling="mean")
    embed = ViewEmbedder("self_guided", self_guided=sg)
    before = embed(encoder, EXAMPLES)
    with torch.no_grad():
        for p in encoder.backbone.parameters():
            p.add_(0.1)
    after = embed(encoder, EXAMPLES)
    assert torch.allclose(before.positive, after.positive)  # frozen copy unaffected by training
    assert not torch.allclose(before.anchor, after.anchor)
    with torch.no_grad():
        for p in encoder.backbone.parameters():
            p.sub_(0.1)


def test_poly_view_loss_is_the_mean_over_view_pairs():
    torch.manual_seed(0)
    v = [torch.randn(5, 4) for _ in range(3)]
    loss = with_inputs(lambda a, p, n: infonce(a, p, n, temperature=0.1), "infonce")
    got = loss(v[0], v[1], None, extra_positives=v[2].unsqueeze(1))
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = sum(infonce(v[i], v[j], temperature=0.1) for i, j in pairs) / 3
    assert torch.allclose(got, want)


def test_scores_and_teacher_inputs_reach_the_loss(encoder: Encoder):
    from contrastkit.teacher import Teacher

    torch.manual_seed(0)
    a, p = torch.randn(4, 6), torch.randn(4, 6)
    scores = torch.tensor([0.0, 1.0, 3.0, 2.0])
    assert torch.allclose(with_inputs(cosent, "cosent")(a, p, None, scores=scores), cosent(a, p, scores=scores))
    ta, tp = torch.randn(4, 3), torch.randn(4, 3)
    ref = cosine_matrix("t", ta, tp, None)
    want = dclr(a, p, reference_sim=ref, phi=0.2)
    got = with_inputs(lambda *x, **k: dclr(*x, phi=0.2, **k), "dclr")(a, p, None, teacher_anchor=ta,
                                                                       teacher_positive=tp)
    assert torch.allclose(got, want)
    pairs = [Example((s, t), score=float(i)) for i, (s, t) in enumerate(zip(make_sentences(4), make_sentences(4, 9)))]
    out = ViewEmbedder(teacher=Teacher(encoder), scores=True)(encoder, pairs)
    assert out.extras["scores"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert torch.allclose(out.extras["teacher_anchor"], encoder.encode([e.texts[0] for e in pairs],
                                                                      convert_to="torch"), atol=1e-5)


def _run(tmp: Path, tiny_bert: Path, resume: bool = False) -> dict[str, torch.Tensor]:
    tmp.mkdir(parents=True, exist_ok=True)
    data = tmp / "s.txt"
    data.write_text("\n".join(make_sentences(40)) + "\n")
    c = build_config({"data": {"source": str(data)}, "model": {"backbone": str(tiny_bert), "max_length": 16},
                      "views": {"name": "word_deletion", "p": 0.3, "apply_to": "both"},
                      "train": {"output_dir": str(tmp / "run"), "batch_size": 8, "max_steps": 4,
                                "checkpoint_every": 2, "progress": False, "num_threads": 1},
                      "eval": {"every": None, "tasks": []}})
    from safetensors.torch import load_file

    from contrastkit.run import train

    train(c, resume=resume)
    return load_file(str(next((tmp / "run" / "model").rglob("*.safetensors"))))


def test_text_edit_views_resume_exactly(tiny_bert: Path, tmp_path: Path):
    import shutil

    whole = _run(tmp_path, tiny_bert)
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert len(ckpts) == 2
    shutil.rmtree(ckpts[-1])  # as if the run had stopped after step 2
    (tmp_path / "run" / "checkpoints" / "latest").write_text(ckpts[0].name)
    resumed = _run(tmp_path, tiny_bert, resume=True)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
