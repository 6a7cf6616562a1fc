"""Prompt readouts of decoder LMs (encoders/readouts.py), each against a hand-written computation on a tiny
random Llama: the prompt strings spelled out, one text at a time (no padding), a layer-by-layer forward written
here, and the paper's formula at the paper's position and layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import build_tiny_llama
from contrastkit.encoders import Encoder
from contrastkit.encoders import readouts as R
from contrastkit.errors import ConfigError

TEXTS = ["a man is playing a guitar", "is the dog happy?", 'the child said "hello" to the cat',
         "a red car.", "the sun", "a woman reads a book in the park with the dog and the cat"]


def reference_fix(s: str) -> str:
    """The batcher's fix-up in the reference code (scaling_sentemb / token_prepending / CP evaluate*.py)."""
    if len(s) > 0 and s[-1] not in '.?"\'':
        s += '.'
    s = s.replace('"', '\'')
    if len(s) > 0 and '?' == s[-1]:
        s = s[:-1] + '.'
    return s


def _tiny_llama(path: Path) -> Path:
    """The tiny Llama of conftest, 4 layers, with every piece of the readouts' prompts in its vocabulary."""
    corpus = [*R.METAEOL, R.PROMPTEOL, R.PRETENDED_COT, R.KNOWLEDGE, R.CONTRASTIVE_AUX, R.ECHO,
              *(s for s, _ in R.DEMONSTRATIONS), *(w for _, w in R.DEMONSTRATIONS), *TEXTS, "Hello hello"]
    return build_tiny_llama(path, layers=4, texts=corpus)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    return _tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def ids_of(enc: Encoder, prompt: str) -> torch.Tensor:
    return torch.tensor([enc.tokenizer(prompt)["input_ids"]])


@torch.no_grad()
def manual_states(model: torch.nn.Module, ids: torch.Tensor, edit=None) -> list[torch.Tensor]:
    """hidden_states of one unpadded sequence, layer by layer; ``edit(i, h)`` may change block i's input."""
    h = model.embed_tokens(ids)
    pos = torch.arange(ids.shape[1])[None]
    pe = model.rotary_emb(h, pos)
    states = [h]
    for i, layer in enumerate(model.layers):
        if edit is not None:
            h = edit(i, h)
        out = layer(h, attention_mask=None, position_ids=pos, position_embeddings=pe)
        h = out[0] if isinstance(out, tuple) else out
        states.append(h)
    states[-1] = model.norm(h)
    return states


def encode(enc: Encoder, texts: list[str]) -> np.ndarray:
    return enc.encode(texts, batch_size=4, precision="fp32")


def test_manual_forward_matches_the_backbone(tiny_llama: Path):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="last_token")
    ids = ids_of(enc, "a man is playing a guitar .")
    with torch.no_grad():
        out = enc.backbone(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    for mine, theirs in zip(manual_states(enc.backbone, ids), out.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_reference_fix_up_and_tokenizer_bos(tiny_llama: Path):
    assert [R.eol_text(t) for t in TEXTS] == [reference_fix(t) for t in TEXTS]
    assert R.eol_text("is the dog happy?") == "is the dog happy."
    assert R.eol_text('the child said "hello" to the cat') == "the child said 'hello' to the cat."
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="prompt")
    assert enc.readout.params == {"template": 'This sentence : "{text}" means in one word:"', "layer": -1}
    assert enc.tokenizer.padding_side == "left"
    assert R.special_affixes(enc.tokenizer) == ([2], [])


def test_prompteol_last_layer_last_token(tiny_llama: Path):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="prompt")
    got = encode(enc, TEXTS)
    for text, row in zip(TEXTS, got):
        prompt = 'This sentence : "' + reference_fix(text) + '" means in one word:"'
        want = manual_states(enc.backbone, ids_of(enc, prompt))[-1][0, -1]
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
    assert enc.prepare(["is the dog happy?"]) == ['This sentence : "is the dog happy." means in one word:"']


def test_prompt_icl_demonstrations_in_the_papers_format(tiny_llama: Path):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="prompt_icl",
                                  readout={"demonstrations": [["A man is playing on a guitar and singing.", "Music"],
                                                              ["a dog is running", "Running"]]})
    got = encode(enc, TEXTS)
    for text, row in zip(TEXTS, got):
        prompt = ('This sentence : "A man is playing on a guitar and singing." means in one word:"Music".'
                  'This sentence : "a dog is running." means in one word:"Running".'
                  'This sentence : "' + reference_fix(text) + '" means in one word:"')
        want = manual_states(enc.backbone, ids_of(enc, prompt))[-1][0, -1]
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
    default = Encoder.from_pretrained(str(tiny_llama), pooling="prompt_icl")
    assert default.prepare(["a cat"])[0].startswith(
        'This sentence : "A man is playing on a guitar and singing." means in one word:"Music".This sentence : ')


@pytest.mark.parametrize("layers", [[-1], [-1, -2, 2]])
def test_metaeol_averages_eight_prompts_and_layers(tiny_llama: Path, layers: list[int]):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="metaeol", readout={"layers": layers})
    assert len(enc.readout.params["templates"]) == 8
    got = encode(enc, TEXTS[:4])
    for text, row in zip(TEXTS[:4], got):
        vecs = []
        for template in R.METAEOL:
            states = manual_states(enc.backbone, ids_of(enc, template.replace("{text}", reference_fix(text))))
            vecs += [states[layer][0, -1] for layer in layers]
        np.testing.assert_allclose(row, torch.stack(vecs).mean(0).numpy(), atol=1e-5)


@pytest.mark.parametrize("name,prefix", [
    ("pretended_cot", "After thinking step by step , this sentence : "),
    ("knowledge", "The essence of a sentence is often captured by its main subjects and actions, while descriptive "
                  "terms provide additional but less central details. With this in mind , this sentence : ")])
def test_pretended_cot_and_knowledge_read_the_second_to_last_layer(tiny_llama: Path, name: str, prefix: str):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling=name)
    assert enc.readout.params["layer"] == -2
    got = encode(enc, TEXTS)
    for text, row in zip(TEXTS, got):
        prompt = prefix + '"' + reference_fix(text) + '" means in one word:"'
        states = manual_states(enc.backbone, ids_of(enc, prompt))
        np.testing.assert_allclose(row, states[-2][0, -1].numpy(), atol=1e-5)
        assert not np.allclose(row, states[-1][0, -1].numpy(), atol=1e-3)


@pytest.mark.parametrize("mode", ["scaled", "norm"])
def test_contrastive_prompt_steers_the_heads_at_act_layer(tiny_llama: Path, mode: str):
    params = {"act_layer": 1, "coeff": 0.7, "mode": mode, "layer": -2}
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="contrastive_prompt", readout=params)
    got = encode(enc, TEXTS)
    o_proj = enc.backbone.layers[1].self_attn.o_proj
    for text, row in zip(TEXTS, got):
        s = reference_fix(text)
        main = ids_of(enc, 'This sentence : "' + s + '" means in one word:"')
        aux = ids_of(enc, 'The irrelevant information of this sentence : "' + s + '" means in one word:"')
        seen: list[torch.Tensor] = []
        h = o_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0][0, -1].clone()))
        try:
            manual_states(enc.backbone, aux)
            manual_states(enc.backbone, main)
        finally:
            h.remove()
        b, a = seen[0], seen[1]
        new = 0.7 * (a - b) if mode == "scaled" else (a - b) * a.norm() / ((a - b).norm() + 1e-7)

        def steer(m, args):
            x = args[0].clone()
            x[0, -1] = new
            return (x,)

        h = o_proj.register_forward_pre_hook(steer)
        try:
            want = manual_states(enc.backbone, main)[-2][0, -1]
        finally:
            h.remove()
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
        plain = manual_states(enc.backbone, main)[-2][0, -1]
        assert not np.allclose(row, plain.numpy(), atol=1e-3)


def test_token_prepending_replaces_the_placeholder_in_start_to_exit(tiny_llama: Path, tmp_path: Path):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="token_prepending", readout={"start": 1, "exit": 3})
    pst = enc.tokenizer.convert_tokens_to_ids("<PST>")
    assert pst == len(enc.tokenizer) - 1 and enc.backbone.get_input_embeddings().weight.shape[0] == len(enc.tokenizer)
    got = encode(enc, TEXTS)
    for text, row in zip(TEXTS, got):
        ids = ids_of(enc, 'This sentence : <PST> "' + reference_fix(text) + '" means in one word:"')
        where = int((ids[0] == pst).nonzero()[0, 0])
        assert where == 4  # <s> This sentence : <PST>

        def edit(i, h):
            if 1 <= i < 3:
                h = h.clone()
                h[0, where] = h[0, -1]
            return h

        want = manual_states(enc.backbone, ids, edit)[-1][0, -1]
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
        plain = manual_states(enc.backbone, ids)[-1][0, -1]
        assert not np.allclose(row, plain.numpy(), atol=1e-3)
    # the placeholder is looked up by its text, not a fixed id: another name works the same way
    other = Encoder.from_pretrained(str(tiny_llama), pooling="token_prepending",
                                    readout={"placeholder": "[SENT]", "template": 'This sentence : [SENT] "{text}" '
                                                                                  'means in one word:"'})
    assert other.readout.placeholder_id == other.tokenizer.convert_tokens_to_ids("[SENT]")


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_echo_pools_the_second_copy_only(tiny_llama: Path, pool: str):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="echo", readout={"pool": pool})
    assert enc.tokenizer.padding_side == "right"
    got = encode(enc, TEXTS)
    tok = enc.tokenizer
    for text, row in zip(TEXTS, got):
        first = tok("Rewrite the sentence: " + text + ", rewritten sentence: ", add_special_tokens=False)["input_ids"]
        second = tok(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[tok.bos_token_id, *first, *second]])
        states = manual_states(enc.backbone, ids)[-1][0]
        copy = states[1 + len(first):]
        want = copy.mean(0) if pool == "mean" else copy[-1]
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)


def test_a_long_text_is_shortened_never_the_template(tiny_llama: Path):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling="prompt", max_length=20)
    feats = enc.tokenize([" ".join(["dog"] * 40)])
    ids = feats["input_ids"][0].tolist()
    assert len(ids) == 20
    tail = enc.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    assert ids[-len(tail):] == tail
    with pytest.raises(ConfigError, match="max_length"):
        Encoder.from_pretrained(str(tiny_llama), pooling="metaeol", max_length=20).encode(["a dog"])


ALL = list(R.READOUTS)


@pytest.mark.parametrize("name", ALL)
def test_each_readout_is_saved_and_restored(tiny_llama: Path, tmp_path: Path, name: str):
    params = {"contrastive_prompt": {"act_layer": 2, "mode": "norm"}, "token_prepending": {"start": 0, "exit": 2},
              "echo": {"pool": "last"}, "metaeol": {"layers": [-1, -3]}, "pretended_cot": {"layer": 3}}.get(name, {})
    enc = Encoder.from_pretrained(str(tiny_llama), pooling=name, readout=params)
    before = encode(enc, TEXTS)
    path = enc.save(tmp_path / "m")
    meta = json.loads((path / "contrastkit.json").read_text())
    assert meta["pooling"] == name and meta["readout"] == enc.readout.params
    back = Encoder.from_pretrained(str(path))
    assert back.pooling == name and back.readout.params == enc.readout.params
    np.testing.assert_allclose(encode(back, TEXTS), before, atol=1e-5)


@pytest.mark.parametrize("name", ["prompt", "prompt_icl"])
def test_sentence_transformers_runs_last_layer_prompteol_identically(tiny_llama: Path, tmp_path: Path, name: str):
    st = pytest.importorskip("sentence_transformers")
    enc = Encoder.from_pretrained(str(tiny_llama), pooling=name)
    path = enc.save(tmp_path / "m")
    assert json.loads((path / "1_Pooling" / "config.json").read_text())["pooling_mode_lasttoken"] is True
    model = st.SentenceTransformer(str(path), device="cpu")
    ours = encode(enc, TEXTS)
    theirs = model.encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # the tokenizer in memory keeps no chat template of ours
    assert getattr(enc.tokenizer, "chat_template", None) is None


@pytest.mark.parametrize("name,params", [("prompt", {"layer": -2}), ("metaeol", {}), ("pretended_cot", {}),
                                         ("contrastive_prompt", {"act_layer": 1}), ("token_prepending", {}),
                                         ("echo", {})])
def test_sentence_transformers_refuses_readouts_it_cannot_express(tiny_llama: Path, tmp_path: Path, name: str,
                                                                  params: dict):
    st = pytest.importorskip("sentence_transformers")
    path = Encoder.from_pretrained(str(tiny_llama), pooling=name, readout=params).save(tmp_path / "m")
    with pytest.raises(Exception, match="contrastkit"):
        st.SentenceTransformer(str(path), device="cpu")


def test_readouts_train_with_gradients(tiny_llama: Path):
    for name, params in (("contrastive_prompt", {"act_layer": 2}), ("token_prepending", {}), ("echo", {})):
        enc = Encoder.from_pretrained(str(tiny_llama), pooling=name, readout=params)
        enc.train()
        emb = enc.embed_texts(TEXTS, buckets=2)
        emb.sum().backward()
        assert emb.shape == (len(TEXTS), 32)
        assert enc.backbone.layers[0].mlp.up_proj.weight.grad is not None
        enc.eval()
        np.testing.assert_allclose(emb.detach().numpy(), encode(enc, TEXTS), atol=1e-5)


def _forward_widths(enc: Encoder) -> list[tuple[int, int]]:
    """(rows, tokens) of every backbone forward pass ``enc`` makes from now on."""
    seen: list[tuple[int, int]] = []
    enc.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    return seen


@pytest.mark.parametrize("name", ["metaeol", "prompt_icl", "knowledge"])
def test_shared_prompt_prefixes_run_once_per_batch_and_change_nothing(tiny_llama: Path, name: str):
    enc = Encoder.from_pretrained(str(tiny_llama), pooling=name)
    seen = _forward_widths(enc)
    got = encode(enc, TEXTS)  # 2 batches of 4 and 2 texts
    k = len(enc.readout.prompts("x"))
    full = max(len(r) for t in TEXTS for r in enc.readout.featurize(enc.tokenizer, t, None)["rows"])
    prefix_passes = [s for s in seen if s[0] == 1]
    assert len(prefix_passes) == 2 * k  # one per template per batch
    suffix_passes = [s for s in seen if s[0] > 1]
    assert suffix_passes and max(w for _, w in suffix_passes) < full / 2  # the rows carry only what follows
    enc.train()  # with gradients every prompt runs whole
    with torch.enable_grad():
        whole = enc.embed_texts(TEXTS, buckets=1).detach().numpy()
    np.testing.assert_allclose(got, whole, atol=1e-5)


def test_shared_prefixes_under_lora_adapters(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch):
    import warnings

    from contrastkit.encoders.adapters import apply_lora

    enc = Encoder.from_pretrained(str(tiny_llama), pooling="metaeol")
    enc.backbone = apply_lora(enc.backbone, r=4, alpha=8, dropout=0.0, target_modules="all-linear", base_name="b")
    for name, p in enc.backbone.named_parameters():
        if "lora_B" in name:  # non-zero adapters, so they change the vectors
            torch.nn.init.normal_(p, std=0.1)
    seen = _forward_widths(enc)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # the cache goes by the installed transformers' own name
        got = encode(enc, TEXTS[:4])
    assert any(rows == 1 for rows, _ in seen)
    monkeypatch.setattr(R, "SHARE_PREFIXES", False)
    np.testing.assert_allclose(got, encode(enc, TEXTS[:4]), atol=1e-5)


def test_bidirectional_backbones_never_share_a_prefix(tiny_llama: Path):
    from contrastkit.lm.bidirectional import attends_causally, make_bidirectional

    enc = Encoder.from_pretrained(str(tiny_llama), pooling="knowledge")
    assert attends_causally(enc.backbone)
    make_bidirectional(enc.backbone)
    assert not attends_causally(enc.backbone)
    seen = _forward_widths(enc)
    encode(enc, TEXTS[:2])
    assert all(rows == 2 for rows, _ in seen)  # one pass over whole prompts


def test_readout_parameters_are_validated(tiny_llama: Path):
    from contrastkit.config import build_config

    base = {"data": {"source": "x.txt"}, "model": {"backbone": "b"}}
    ok = build_config({**base, "model": {"backbone": "b", "pooling": "echo", "readout": {"pool": "last"}}})
    assert ok.model.readout == {"pool": "last"}
    bad = [({"pooling": "mean", "readout": {"layer": -2}}, "applies only to the readout poolings"),
           ({"pooling": "echo", "readout": {"pol": "last"}}, "unknown readout parameter"),
           ({"pooling": "echo", "readout": {"pool": "max"}}, "'mean' or 'last'"),
           ({"pooling": "contrastive_prompt", "readout": {"mode": "add"}}, "'scaled' or 'norm'"),
           ({"pooling": "token_prepending", "readout": {"start": 3, "exit": 2}}, "start < exit"),
           ({"pooling": "metaeol", "readout": {"layers": []}}, "non-empty list"),
           ({"pooling": "prompt_icl", "readout": {"demonstrations": [["only a sentence"]]}}, "sentence, word")]
    for model, match in bad:
        with pytest.raises(ConfigError, match=match):
            build_config({**base, "model": {"backbone": "b", **model}})
    with pytest.raises(ConfigError, match="out of range"):
        Encoder.from_pretrained(str(tiny_llama), pooling="prompt", readout={"layer": 9})
    with pytest.raises(ConfigError, match="act_layer"):
        Encoder.from_pretrained(str(tiny_llama), pooling="contrastive_prompt", readout={"act_layer": 4})
    with pytest.raises(ConfigError, match="ONNX"):
        Encoder.from_pretrained(str(tiny_llama), pooling="echo").use_onnx("x.onnx")


def test_lora_through_prompteol_on_triplets_merges_into_a_model_sentence_transformers_runs(tiny_llama: Path,
                                                                                           tmp_path: Path):
    """The recipe's path in small: supervised triplets through PromptEOL, LoRA merged, loaded by ST."""
    pytest.importorskip("peft")
    st = pytest.importorskip("sentence_transformers")
    from contrastkit.config import build_config
    from contrastkit.run import train

    data = tmp_path / "nli.csv"
    data.write_text("anchor,positive,negative\n" + "".join(
        f'"{TEXTS[i]}","{TEXTS[(i + 1) % len(TEXTS)]}","{TEXTS[(i + 3) % len(TEXTS)]}"\n' for i in range(len(TEXTS))))
    result = train(build_config({
        "data": {"source": str(data), "kind": "triplet", "columns": ["anchor", "positive", "negative"]},
        "model": {"backbone": str(tiny_llama), "pooling": "prompt", "max_length": 48,
                  "lora": {"r": 4, "alpha": 8.0, "save": "merged"}},
        "loss": {"name": "infonce", "hard_negative_weight": 1.0},
        "train": {"output_dir": str(tmp_path / "run"), "batch_size": 4, "lr": 1e-2, "max_steps": 3,
                  "precision": "fp32", "progress": False, "seed": 1},
        "eval": {"tasks": []},
    }))
    saved = Path(result.model_dir)
    base = Encoder.from_pretrained(str(tiny_llama), pooling="prompt")
    ours = encode(Encoder.from_pretrained(str(saved)), TEXTS)
    assert not np.allclose(ours, encode(base, TEXTS), atol=1e-4)  # the adapters trained and were merged in
    theirs = st.SentenceTransformer(str(saved), device="cpu").encode(TEXTS, batch_size=4)
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cos.min() >= 0.9999
