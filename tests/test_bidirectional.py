"""LLM2Vec on transformers 5: bidirectional attention (contrastkit.lm.bidirectional) and masked next-token
prediction (contrastkit.losses.mntp, contrastkit.lm.mntp), on a tiny random Llama built here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_bert, build_tiny_llama, make_sentences
from contrastkit.encoders import Encoder
from contrastkit.errors import ConfigError
from contrastkit.lm.bidirectional import is_bidirectional, make_bidirectional
from contrastkit.lm.mntp import LMHead, MntpEmbed, build_mntp_config, mntp_loss, train_mntp
from contrastkit.losses.mntp import IGNORE, mask_tokens, mntp


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-decoder"))


def _backbone(path: Path, *, bidirectional: bool, attn: str = "sdpa") -> torch.nn.Module:
    enc = Encoder.from_pretrained(str(path), pooling="mean", bidirectional=bidirectional or None)
    enc.backbone.set_attn_implementation(attn)
    return enc.backbone.eval()


def _last(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids) if mask is None else mask).last_hidden_state


# -- bidirectional attention -------------------------------------------------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_an_early_token_sees_a_later_token_only_when_bidirectional(tiny_decoder: Path, attn: str):
    ids = torch.tensor([[2, 10, 11, 12, 13], [2, 10, 11, 12, 14]])  # only the last token differs
    causal = _last(_backbone(tiny_decoder, bidirectional=False, attn=attn), ids)
    torch.testing.assert_close(causal[0, :4], causal[1, :4])  # the past never sees the future
    bi_model = _backbone(tiny_decoder, bidirectional=True, attn=attn)
    assert is_bidirectional(bi_model)
    bi = _last(bi_model, ids)
    for pos in range(4):
        assert (bi[0, pos] - bi[1, pos]).abs().max() > 1e-4, f"position {pos} ignores the changed later token"


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bidirectional_equals_a_full_attention_forward(tiny_decoder: Path, attn: str):
    """The switched model equals the causal model run with an explicit all-visible 4D mask (hand-made), also
    for a right-padded batch (padded keys masked out, real positions compared)."""
    causal = _backbone(tiny_decoder, bidirectional=False, attn=attn)
    bi = _backbone(tiny_decoder, bidirectional=True, attn=attn)
    ids = torch.tensor([[2, 10, 11, 12, 13, 15], [2, 20, 21, 22, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    full = torch.zeros(2, 1, 6, 6)  # additive: 0 = visible
    full.masked_fill_(mask[:, None, None, :] == 0, torch.finfo(torch.float32).min)
    with torch.no_grad():
        want = causal(input_ids=ids, attention_mask=full).last_hidden_state
    got = _last(bi, ids, mask)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :4], want[1, :4], atol=1e-5, rtol=1e-5)
    # and one unpadded sequence alone equals its row of the padded batch
    alone = _last(bi, ids[1:, :4])
    torch.testing.assert_close(alone[0], got[1, :4], atol=1e-5, rtol=1e-5)


def test_save_and_reload_keep_bidirectional(tiny_decoder: Path, tmp_path: Path):
    enc = Encoder.from_pretrained(str(tiny_decoder), pooling="mean", bidirectional=True)
    texts = ["a man is playing a guitar", "the dog runs in the park", "a red car"]
    before = enc.encode(texts, precision="fp32")
    enc.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "contrastkit.json").read_text())["bidirectional"] is True
    assert "is_causal" not in json.loads((tmp_path / "m" / "config.json").read_text())  # plain causal config
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    assert modules[0]["type"].endswith("ContrastkitModule")  # sentence-transformers would run it causally
    again = Encoder.from_pretrained(str(tmp_path / "m"))
    assert is_bidirectional(again.backbone)
    torch.testing.assert_close(torch.tensor(again.encode(texts, precision="fp32")), torch.tensor(before))
    causal = Encoder.from_pretrained(str(tmp_path / "m"), bidirectional=False)  # explicitly off: causal
    assert not is_bidirectional(causal.backbone)


@pytest.mark.parametrize("save", ["merged", "adapter"])
def test_lora_on_a_bidirectional_model_saves_and_reloads(tiny_decoder: Path, tmp_path: Path, save: str):
    enc = Encoder.from_pretrained(str(tiny_decoder), pooling="mean", bidirectional=True)
    enc.add_lora(r=4, alpha=8, target_modules=["q_proj", "v_proj"], save=save, base_name=str(tiny_decoder))
    with torch.no_grad():
        for name, p in enc.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    texts = ["a man is playing a guitar", "the dog runs"]
    before = enc.encode(texts, precision="fp32")
    enc.save(tmp_path / save)
    again = Encoder.from_pretrained(str(tmp_path / save))
    assert is_bidirectional(again.backbone)
    torch.testing.assert_close(torch.tensor(again.encode(texts, precision="fp32")), torch.tensor(before),
                               atol=1e-5, rtol=1e-4)


def test_bidirectional_is_refused_for_an_encoder(tmp_path: Path):
    bert = build_tiny_bert(tmp_path / "bert")
    with pytest.raises(ConfigError, match="already attends in both directions"):
        Encoder.from_pretrained(str(bert), bidirectional=True)


def test_model_bidirectional_config_key_reaches_the_encoder(tiny_decoder: Path):
    from contrastkit.config import ModelConfig
    from contrastkit.run import build_encoder

    enc = build_encoder(ModelConfig(backbone=str(tiny_decoder), bidirectional=True))
    assert is_bidirectional(enc.backbone)
    assert not is_bidirectional(build_encoder(ModelConfig(backbone=str(tiny_decoder))).backbone)


def test_make_bidirectional_is_idempotent(tiny_decoder: Path):
    model = _backbone(tiny_decoder, bidirectional=True)
    assert make_bidirectional(model) is model and is_bidirectional(model)


# -- MNTP -----------------------------------------------------------------------------------------

def test_mntp_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 3)
    vocab = torch.randn(5, 3)
    labels = torch.full((2, 4), IGNORE)
    labels[0, 2] = 4  # predicted from hidden[0, 1]
    labels[1, 1] = 0  # from hidden[1, 0]
    labels[1, 3] = 2  # from hidden[1, 2]
    labels[1, 0] = 3  # position 0 has no previous position: ignored
    terms = []
    for b, i in ((0, 2), (1, 1), (1, 3)):
        logits = [sum(hidden[b, i - 1, k] * vocab[v, k] for k in range(3)) for v in range(5)]
        log_z = math.log(sum(math.exp(float(x)) for x in logits))
        terms.append(log_z - float(logits[int(labels[b, i])]))
    want = sum(terms) / len(terms)
    assert float(mntp(hidden, vocab, labels)) == pytest.approx(want, rel=1e-5)
    cap = 0.5  # Gemma-style final-logit soft cap
    capped = []
    for b, i in ((0, 2), (1, 1), (1, 3)):
        logits = [cap * math.tanh(float(hidden[b, i - 1] @ vocab[v]) / cap) for v in range(5)]
        capped.append(math.log(sum(math.exp(x) for x in logits)) - logits[int(labels[b, i])])
    assert float(mntp(hidden, vocab, labels, softcap=cap)) == pytest.approx(sum(capped) / 3, rel=1e-5)


def test_mntp_loss_equals_transformers_causal_lm_loss_with_masked_labels(tiny_decoder: Path):
    """An independent implementation: LlamaForCausalLM's own shifted loss with labels only at masked tokens
    (how the LLM2Vec reference computes MNTP)."""
    from transformers import LlamaForCausalLM

    lm = LlamaForCausalLM.from_pretrained(str(tiny_decoder)).eval()
    make_bidirectional(lm.model)
    ids = torch.tensor([[2, 10, 11, 12, 13, 15, 16], [2, 20, 21, 22, 23, 0, 0]])
    mask = (ids != 0).long()
    torch.manual_seed(3)
    masked, labels = mask_tokens(ids, mask, probability=0.5, mask_id=4, vocab_size=lm.config.vocab_size,
                                 special_ids=[0, 1, 2, 3])
    assert (labels != IGNORE).any()
    with torch.no_grad():
        want = lm(input_ids=masked, attention_mask=mask, labels=labels).loss
        hidden = lm.model(input_ids=masked, attention_mask=mask).last_hidden_state
        got = mntp(hidden, lm.get_output_embeddings().weight, labels)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_mask_tokens_chooses_only_predictable_real_tokens():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (64, 40), generator=gen)
    ids[:, 0] = 2  # BOS
    mask = torch.ones_like(ids)
    mask[::2, 30:] = 0  # right padding
    ids[mask == 0] = 0
    masked, labels = mask_tokens(ids, mask, probability=0.2, mask_id=4, vocab_size=50, special_ids=[0, 2],
                                 generator=gen)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any()  # BOS: special, and nothing before it
    assert not chosen[mask == 0].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else changes
    share = chosen.sum() / ((mask == 1).sum() - 64)
    assert 0.17 < float(share) < 0.23
    as_mask = (masked[chosen] == 4).float().mean()
    kept = (masked[chosen] == ids[chosen]).float().mean()
    assert 0.74 < float(as_mask) < 0.86 and 0.05 < float(kept) < 0.16
    all_mask, _ = mask_tokens(ids, mask, probability=0.2, mask_id=4, vocab_size=50, special_ids=[0, 2],
                              replace=1.0, randomize=0.0, generator=torch.Generator().manual_seed(1))
    changed = all_mask != ids
    assert (all_mask[changed] == 4).all()
    left = torch.tensor([[0, 0, 7, 8, 9]])  # left padding: the first real token has nothing real before it
    _, lab = mask_tokens(left, (left != 0).long(), probability=0.999, mask_id=4, vocab_size=50, special_ids=[0])
    assert lab.tolist() == [[IGNORE, IGNORE, IGNORE, 8, 9]]


def _mntp_tree(backbone: Path, out: Path, **train: object) -> dict:
    data = out.parent / "mntp-data.txt"
    data.write_text("\n".join(make_sentences(4, seed=5) * 16) + "\n")  # learnable: four texts seen again and again
    return {"data": {"source": str(data)},
            "model": {"backbone": str(backbone), "bidirectional": True, "max_length": 16},
            "mntp": {"probability": 0.3},
            "train": {"output_dir": str(out), "batch_size": 16, "lr": 1e-2, "max_steps": 12, "progress": False,
                      "log_every": 1, "checkpoint_every": 100, "num_threads": 1, "precision": "fp32", **train}}


def test_mntp_training_lowers_the_loss_and_saves_a_bidirectional_model(tiny_decoder: Path, tmp_path: Path):
    result = train_mntp(build_mntp_config(_mntp_tree(tiny_decoder, tmp_path / "run")))
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses
    meta = json.loads((result.model_dir / "contrastkit.json").read_text())
    assert meta["bidirectional"] is True
    assert is_bidirectional(Encoder.from_pretrained(str(result.model_dir)).backbone)


def test_the_trainer_gets_the_mntp_loss_of_the_masked_batch(tiny_decoder: Path):
    """MntpEmbed + mntp_loss = the hand pipeline: mask with the same RNG draw, forward, loss over the tied head."""
    enc = Encoder.from_pretrained(str(tiny_decoder), pooling="mean", bidirectional=True)
    enc.max_length = 16
    enc.eval()
    cfg = build_mntp_config({"data": {"source": "x.txt"}, "model": {"backbone": str(tiny_decoder)}})
    head = LMHead(enc.backbone, str(tiny_decoder))
    embed = MntpEmbed(enc.tokenizer, head, cfg.mntp)
    from contrastkit.data import Example

    texts = make_sentences(6, seed=2)
    torch.manual_seed(11)
    with torch.no_grad():
        got = embed(enc, [Example(texts=(t,)) for t in texts]).loss(mntp_loss())
    feats = enc.tokenizer(texts, padding=True, return_tensors="pt")
    torch.manual_seed(11)
    masked, labels = mask_tokens(feats["input_ids"], feats["attention_mask"], probability=0.2, mask_id=4,
                                 vocab_size=len(enc.tokenizer), special_ids=[0, 1, 2, 3])
    with torch.no_grad():
        hidden = enc.backbone(input_ids=masked, attention_mask=feats["attention_mask"]).last_hidden_state
    want = mntp(hidden, enc.backbone.get_input_embeddings().weight, labels)
    torch.testing.assert_close(got, want)


def test_untied_lm_head_is_loaded_from_the_checkpoint(tmp_path: Path):
    from transformers import LlamaForCausalLM

    path = build_tiny_llama(tmp_path / "untied", tie=False)
    enc = Encoder.from_pretrained(str(path), bidirectional=True)
    head = LMHead(enc.backbone, str(path))
    want = LlamaForCausalLM.from_pretrained(str(path)).lm_head.weight
    torch.testing.assert_close(head.weight(enc), want)
    assert not head.weight(enc).requires_grad


def test_mntp_config_is_validated(tiny_decoder: Path):
    base = {"data": {"source": "x.txt"}, "model": {"backbone": str(tiny_decoder)}}
    with pytest.raises(ConfigError, match="unknown key 'loss'"):
        build_mntp_config({**base, "loss": {"name": "infonce"}})
    with pytest.raises(ConfigError, match="data.kind must be 'single'"):
        build_mntp_config({**base, "data": {"source": "x.jsonl", "kind": "pair"}})
    with pytest.raises(ConfigError, match="replace"):
        build_mntp_config({**base, "mntp": {"replace": 0.95, "randomize": 0.1}})
    with pytest.raises(ConfigError, match="prompt readout"):
        build_mntp_config({**base, "model": {"backbone": str(tiny_decoder), "pooling": "prompt"}})


def test_an_unknown_mask_token_is_refused(tiny_decoder: Path, tmp_path: Path):
    tree = _mntp_tree(tiny_decoder, tmp_path / "run", max_steps=1)
    tree["mntp"]["token"] = "<mask>"
    with pytest.raises(ConfigError, match="not a token of this vocabulary"):
        train_mntp(build_mntp_config(tree))


def test_cli_runs_mntp_and_resumes(tiny_decoder: Path, tmp_path: Path):
    import yaml

    from contrastkit.cli import main

    tree = _mntp_tree(tiny_decoder, tmp_path / "run", max_steps=4, checkpoint_every=2)
    (tmp_path / "mntp.yaml").write_text(yaml.safe_dump(tree))
    assert main(["lm", "mntp", str(tmp_path / "mntp.yaml"), "--set", "train.max_steps=2"]) == 0
    assert (tmp_path / "run" / "model" / "contrastkit.json").is_file()
    assert main(["lm", "mntp", "--resume", str(tmp_path / "run"), "--set", "train.max_steps=4",
                 "--allow-change", "train.max_steps"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert main(["lm", "mntp", "--resume", str(tmp_path / "run"), "--set", "mntp.probability=0.5"]) == 2
