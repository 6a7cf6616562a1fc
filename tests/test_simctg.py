"""SimCTG (contrastkit.losses.simctg, contrastkit.lm.simctg) and the generation metrics
(contrastkit.generation.metrics): hand-computed values on small tensors, a 2-step run on a tiny random Llama."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama, check_kill_and_resume, make_sentences

from contrastkit.errors import ConfigError
from contrastkit.generation import metrics
from contrastkit.losses.simctg import mle, simctg, token_contrastive

R = 1 / math.sqrt(2)


# ------------------------------------------------------------------------------------------------- SimCTG loss

def test_token_contrastive_by_hand():
    # normalized: h0 = (1, 0), h1 = (0, 1), h2 = (r, r): s01 = 0, s02 = s12 = r; margin 0.5:
    # max(0, 0.5 - 1 + s_ij) over the 6 ordered pairs = 4 * (r - 0.5), divided by |x|(|x| - 1) = 6
    h = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]]])
    expect = 4 * (R - 0.5) / 6
    assert token_contrastive(h, margin=0.5).item() == pytest.approx(expect, abs=1e-6)
    # a padded 4th token changes nothing
    padded = torch.cat([h, torch.tensor([[[5.0, -1.0]]])], 1)
    assert token_contrastive(padded, torch.tensor([[1, 1, 1, 0]])).item() == pytest.approx(expect, abs=1e-6)
    # margin 1: max(0, s_ij) = 4 r / 6
    assert token_contrastive(h, margin=1.0).item() == pytest.approx(4 * R / 6, abs=1e-6)
    # a batch: the pairs of both sequences summed, divided by all pairs (6 + 2), as the authors' code does;
    # the second sequence's two tokens are parallel: s = 1, each pair max(0, 0.5) = 0.5
    batch = torch.zeros(2, 3, 2)
    batch[0] = h[0]
    batch[1, :2] = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert token_contrastive(batch, mask).item() == pytest.approx((4 * (R - 0.5) + 1.0) / 8, abs=1e-6)
    # no pair at all: a zero with a graph
    one = torch.ones(1, 1, 2, requires_grad=True)
    zero = token_contrastive(one)
    assert zero.item() == 0.0 and zero.requires_grad


def test_simctg_is_mle_plus_cl_and_mle_is_the_lm_loss(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path / "llama", layers=2, tie=False, seed=1)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    enc = tok(["a man is playing the guitar", "the dog runs"], padding=True, return_tensors="pt",
              padding_side="right")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                labels=ids.masked_fill(mask == 0, -100))
    total, lm, cl = simctg(out.logits, out.hidden_states[-1], ids, mask, margin=0.5)
    assert lm.item() == pytest.approx(out.loss.item(), rel=1e-5)
    assert cl.item() == pytest.approx(token_contrastive(out.hidden_states[-1], mask).item(), rel=1e-6)
    assert total.item() == pytest.approx(lm.item() + cl.item(), rel=1e-6)
    labels = ids.masked_fill(mask == 0, -100)
    assert mle(out.logits, labels).item() == pytest.approx(out.loss.item(), rel=1e-5)


# --------------------------------------------------------------------------------------------- training stage

def test_simctg_two_steps_on_a_tiny_llama(tmp_path, capsys):
    from contrastkit.cli import main
    from contrastkit.lm import load_causal_lm
    from contrastkit.lm.simctg import build_simctg_config, train_simctg

    path = build_tiny_llama(tmp_path / "llama", layers=2, tie=True, seed=2)
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(make_sentences(12)) + "\n")
    before, _ = load_causal_lm(path)
    cfg = build_simctg_config({"data": {"source": str(data)}, "model": {"name": str(path), "max_length": 16},
                               "train": {"output_dir": str(tmp_path / "run"), "batch_size": 4, "lr": 1e-2,
                                         "max_steps": 2, "log_every": 1, "device": "cpu"}})
    result = train_simctg(cfg)
    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(r["loss"] == pytest.approx(r["mle"] + r["cl"], rel=1e-5) and r["cl"] > 0 for r in logged)
    after, tok = load_causal_lm(result.model_dir)
    assert tok.padding_side == "left"
    changed = [n for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters())
               if not torch.equal(a, b)]
    assert changed
    # the command on the shipped recipe, made small with --set (lm mntp and lm simctg share the 'lm' group)
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "simctg-smollm2.yaml")
    small = [f"data.source={data}", f"model.name={path}", "model.max_length=16", f"train.output_dir={tmp_path / 'run2'}",
             "train.batch_size=4", "train.max_steps=1", "train.warmup_steps=0", "train.device=cpu"]
    args = ["lm", "simctg", recipe, *(a for s in small for a in ("--set", s))]
    assert main([*args, "--set", "simctg.weight=0"]) == 0
    assert json.loads(capsys.readouterr().out)["last"]["loss"] > 0
    assert main(args) == 2  # run2/model exists: refused
    with pytest.raises(ConfigError, match="kind"):
        build_simctg_config({"data": {"source": "x", "kind": "pair"}, "model": {"name": "m"}})


def test_simctg_resumes_after_a_kill(tmp_path, monkeypatch, capsys):
    """Killed in step 5 of 6, ``lm simctg --resume RUN_DIR`` continues from the step-4 checkpoint to the weights of
    an uninterrupted run (see conftest.check_kill_and_resume)."""
    from safetensors.torch import load_file

    from contrastkit.cli import main
    from contrastkit.lm import simctg as stage
    from contrastkit.lm.simctg import build_simctg_config, train_simctg

    path = build_tiny_llama(tmp_path / "llama", layers=2, tie=True, seed=2)
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(make_sentences(12)) + "\n")

    def run(run_dir, resume):
        if resume:
            assert main(["lm", "simctg", "--resume", str(run_dir)]) == 0
        else:
            train_simctg(build_simctg_config({
                "data": {"source": str(data)}, "model": {"name": str(path), "max_length": 16},
                "train": {"output_dir": str(run_dir), "batch_size": 4, "lr": 1e-2, "max_steps": 6, "warmup_steps": 2,
                          "log_every": 1, "checkpoint_every": 2, "progress": False, "device": "cpu"}}))
        return load_file(str(run_dir / "model" / "model.safetensors"))

    check_kill_and_resume(monkeypatch, capsys, stage, "simctg", run, tmp_path,
                          load_file(str(path / "model.safetensors")))


# ----------------------------------------------------------------------------------------------------- metrics

def test_rep_n_and_diversity_by_hand():
    texts = ["a b a b", "c c c"]
    # bigrams: (ab, ba, ab) -> 2 unique of 3; (cc, cc) -> 1 of 2: rep-2 = 1 - 3/5
    assert metrics.rep_n(texts, 2) == pytest.approx(40.0)
    assert metrics.rep_n(texts, 3) == pytest.approx(0.0)  # (aba, bab), (ccc): all unique within their text
    assert metrics.rep_n(texts, 4) == pytest.approx(0.0)
    assert metrics.diversity(texts) == pytest.approx(0.6)
    report = metrics.repetition_report(["x y x y x y"])  # 5 bigrams, 2 unique; 4 trigrams, 2; 3 4-grams, 2
    assert report["rep-2"] == pytest.approx(60.0) and report["rep-3"] == pytest.approx(50.0)
    assert report["rep-4"] == pytest.approx(100 / 3)
    assert report["diversity"] == pytest.approx(0.4 * 0.5 * (2 / 3))
    assert metrics.rep_n(["one"], 2) == 0.0


class _FakeEncoder:
    def __init__(self, table):
        self.table = table

    def encode(self, texts, batch_size=64):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_coherence_by_hand():
    enc = _FakeEncoder({"p1": [1, 0], "c1": [1, 1], "p2": [0, 2], "c2": [0, -1]})
    assert metrics.coherence(enc, ["p1", "p2"], ["c1", "c2"]) == pytest.approx((R - 1) / 2, abs=1e-6)
    assert metrics.coherence(enc, ["p1", "p2"], ["c1", "c2"], per_item=True) == pytest.approx([R, -1.0], abs=1e-6)
    with pytest.raises(ConfigError):
        metrics.coherence(enc, ["p1"], ["c1", "c2"])


def test_self_similarity_by_hand():
    h = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [9.0, 9.0]]])
    got = metrics.self_similarity(h, torch.tensor([[1, 1, 1, 0]]))
    assert got.tolist() == pytest.approx([(0 + R + R) / 3], abs=1e-6)


def test_mauve_identical_high_disjoint_low():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 8))
    same = metrics.mauve(p, p.copy(), num_buckets=10).mauve
    shifted = metrics.mauve(p, rng.normal(size=(200, 8)) + 8.0, num_buckets=10).mauve
    assert same > 0.99
    assert shifted < 0.1
    with pytest.raises(ConfigError, match="same d"):
        metrics.mauve(p, p[:, :4])


def test_generation_perplexity_and_isotropy_on_a_tiny_llama(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path / "llama", layers=2, tie=False, seed=4)
    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    prompts, conts = ["a man is", "the dog"], ["playing the guitar", "runs in the park fast"]
    nll, n = 0.0, 0
    for p, c in zip(prompts, conts):  # one pair at a time, by hand
        pi, ci = tok(p)["input_ids"], tok(c, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = model(torch.tensor([pi + ci])).logits[0].float().log_softmax(-1)
        for k, t in enumerate(ci):
            nll -= logp[len(pi) + k - 1, t].item()
            n += 1
    got = metrics.generation_perplexity(model, tok, prompts, conts, batch_size=2)
    assert got == pytest.approx(math.exp(nll / n), rel=1e-4)
    iso = metrics.token_self_similarity(model, tok, ["a man is playing the guitar", "the dog runs"])
    assert -1.0 <= iso["mean"] <= 1.0 and iso["texts"] == 2
    assert metrics.tokens_per_second([[1, 2, 3], [4]], 2.0) == 2.0
