"""Contrastive input decoding (contrastkit.generation.contrastive_input_decoding) against a slow reference.

The reference decodes each (input, contrastive input) pair alone, unpadded, recomputing both full sequences at
every step (no KV cache) and scoring every token with a plain loop; the decoder runs the pairs as one
left-padded 2B-row batch with a cache. Regular and contrastive prompts have different lengths, so the padding
differs between the two halves of the batch.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny_llama
from test_generation import EOS, PROMPTS, STEPS, _penalize, _ref_choose, _ref_decode

from contrastkit.errors import ConfigError
from contrastkit.generation import (
    contrastive_input_decoding,
    generate,
    greedy_search,
    infer_strategy,
)

CONTRASTS = ["a woman is playing the guitar in the big green park", "the small cat is happy and", "a big car"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path_factory.mktemp("cid-llama"), layers=4, tie=False, seed=3)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _batches(tok):
    x = tok(PROMPTS, padding=True, return_tensors="pt", padding_side="left")
    c = tok(CONTRASTS, padding=True, return_tensors="pt", padding_side="left")
    assert x["input_ids"].shape[1] != c["input_ids"].shape[1]  # the two halves pad differently
    return x, c, [tok(p)["input_ids"] for p in PROMPTS], [tok(p)["input_ids"] for p in CONTRASTS]


def _last_logp(model, seq):
    with torch.no_grad():
        return model(torch.tensor([seq]), use_cache=False).logits[0, -1].float().log_softmax(-1)


def _ref_cid(model, rows_x, rows_c, lam, penalty=1.0, **warpers):
    """Per pair: score each token v as log p(v|x) - lam * max(0, log p(v|x') - log p(v|x)), one by one."""

    def step(r, seq, u):
        new = seq[len(rows_x[r]):]
        lx, lc = _last_logp(model, seq), _last_logp(model, rows_c[r] + new)
        scores = torch.tensor([lx[v].item() - lam * max(0.0, lc[v].item() - lx[v].item())
                               for v in range(lx.shape[0])])
        return _ref_choose(_penalize(scores, seq, penalty), u, **warpers)

    return step


@pytest.mark.parametrize("lam,penalty", [(1.0, 1.0), (3.0, 1.2), (0.5, 1.0)])
def test_cid_matches_reference(lm, lam, penalty):
    model, tok = lm
    x, c, rows_x, rows_c = _batches(tok)
    out = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"],
                                     contrastive_attention_mask=c["attention_mask"], contrast_lambda=lam,
                                     repetition_penalty=penalty, max_new_tokens=STEPS, eos_token_id=EOS)
    assert out.new_tokens() == _ref_decode(_ref_cid(model, rows_x, rows_c, lam, penalty), rows_x)
    assert out.prompt_length == x["input_ids"].shape[1]
    assert torch.equal(out.sequences[:, :out.prompt_length], x["input_ids"])


def test_cid_sampled_matches_reference(lm):
    model, tok = lm
    x, c, rows_x, rows_c = _batches(tok)
    out = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"],
                                     contrastive_attention_mask=c["attention_mask"], contrast_lambda=2.0,
                                     do_sample=True, top_p=0.9, seed=5, max_new_tokens=STEPS, eos_token_id=EOS)
    ref = _ref_decode(_ref_cid(model, rows_x, rows_c, 2.0, top_p=0.9), rows_x, seed=5)
    assert out.new_tokens() == ref


def test_cid_lambda_zero_and_same_input_are_greedy(lm):
    model, tok = lm
    x, c, _, _ = _batches(tok)
    greedy = greedy_search(model, x["input_ids"], x["attention_mask"], max_new_tokens=STEPS, eos_token_id=EOS)
    zero = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"],
                                      contrastive_attention_mask=c["attention_mask"], contrast_lambda=0.0,
                                      max_new_tokens=STEPS, eos_token_id=EOS)
    assert torch.equal(zero.sequences, greedy.sequences)
    same = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=x["input_ids"],
                                      contrastive_attention_mask=x["attention_mask"], contrast_lambda=5.0,
                                      max_new_tokens=STEPS, eos_token_id=EOS)
    assert torch.equal(same.sequences, greedy.sequences)
    strong = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"],
                                        contrastive_input_ids=c["input_ids"],
                                        contrastive_attention_mask=c["attention_mask"], contrast_lambda=5.0,
                                        max_new_tokens=STEPS, eos_token_id=EOS)
    assert strong.new_tokens() != greedy.new_tokens()


def test_cid_text_api_and_bad_input(lm):
    model, tok = lm
    x, c, _, _ = _batches(tok)
    done = generate(model, tok, PROMPTS, contrastive_prompts=CONTRASTS, contrast_lambda=2.0, max_new_tokens=6,
                    eos_token_id=[], batch_size=2)
    direct = contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"],
                                        contrastive_attention_mask=c["attention_mask"], contrast_lambda=2.0,
                                        max_new_tokens=6, eos_token_id=[])
    assert [d.token_ids for d in done] == direct.new_tokens()  # batches of 2 pad differently: same tokens
    assert infer_strategy({"contrastive_prompts": CONTRASTS}) == "contrastive_input_decoding"
    with pytest.raises(ConfigError, match="needs contrastive_prompts"):
        generate(model, tok, PROMPTS, strategy="contrastive_input_decoding", max_new_tokens=2)
    with pytest.raises(ConfigError, match="needs contrastive_prompts"):
        generate(model, tok, PROMPTS, contrastive_prompts=CONTRASTS[:2], max_new_tokens=2)
    with pytest.raises(ConfigError, match="one row per input row"):
        contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"][:2])
    with pytest.raises(ConfigError, match="contrast_lambda"):
        contrastive_input_decoding(model, x["input_ids"], x["attention_mask"], contrastive_input_ids=c["input_ids"],
                                   contrast_lambda=-1.0)
    assert not math.isnan(float(direct.sequences.float().sum()))


def test_cli_contrastive_input_decoding(lm, tmp_path, capsys):
    import json

    from contrastkit.cli import main

    model, tok = lm
    path = build_tiny_llama(tmp_path / "llama", layers=4, tie=False, seed=3)  # the fixture's model, on disk
    (tmp_path / "x.txt").write_text("\n".join(PROMPTS) + "\n")
    (tmp_path / "c.txt").write_text("\n".join(CONTRASTS) + "\n")
    args = ["generate", "--model", str(path), "--strategy", "contrastive_input_decoding", "--input",
            str(tmp_path / "x.txt"), "--max-new-tokens", "5", "--contrast-lambda", "2"]
    assert main([*args, "--contrastive-input", str(tmp_path / "c.txt")]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    expect = generate(model, tok, PROMPTS, contrastive_prompts=CONTRASTS, contrast_lambda=2.0, max_new_tokens=5)
    assert [r["completion"] for r in rows] == [c.text for c in expect]
    assert [r["contrastive_prompt"] for r in rows] == CONTRASTS
    assert main(args) == 2
    assert "needs --contrastive-input" in capsys.readouterr().err
    (tmp_path / "c.txt").write_text(CONTRASTS[0] + "\n")
    assert main([*args, "--contrastive-input", str(tmp_path / "c.txt")]) == 2
    assert "one per prompt" in capsys.readouterr().err
