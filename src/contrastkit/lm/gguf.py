"""GGUF checkpoints as transformers models: dequantized weights plus a tokenizer built from the file itself.

A GGUF file carries its tokenizer as metadata (llama.cpp's ``tokenizer.ggml.*`` keys: the vocabulary, the
merges or scores, token types, special ids, BOS/EOS flags; ``tokenizer.chat_template``), not as a
``tokenizer.json``. transformers turns that metadata into a tokenizer class by heuristics that changed between
releases: under 5.3.0 the directory it wrote reloaded as ``CodeLlamaTokenizer`` with ``legacy: false`` and
turned every space of SmolLM2's text into ``<|endoftext|>``, with no error. So contrastkit builds the
tokenizer itself with the ``tokenizers`` library from those keys (byte-level BPE for ``gpt2`` vocabularies,
SentencePiece-style BPE with byte fallback for ``llama`` ones), writes it as ``tokenizer.json`` with
``PreTrainedTokenizerFast`` as its class (and the file's chat template, when it has one), and loads it back by
that class, never through ``AutoTokenizer``'s guesses. Only the weights go through
transformers' GGUF loader (dequantization).

The conversion is cached under :func:`contrastkit.fsutil.cache_dir` ``/gguf``, keyed by the file and by
:data:`CONVERTER_VERSION`, so a fixed converter never reuses a directory an older one wrote.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fsutil import cache_dir, fresh_tmp_dir, replace_dir

log = logging.getLogger("contrastkit.lm")

CONVERTER_VERSION = 3
"""Version of this converter's output; part of the cache key (1: transformers' tokenizer, unchecked;
2: no chat template)."""

MARKER = "contrastkit_gguf.json"
"""File in a converted directory naming its source and converter version."""

# llama.cpp's token types (gguf.TokenType): only control and user-defined tokens become added tokens.
_CONTROL, _USER_DEFINED, _BYTE = 3, 4, 6
_SPIECE_SPACE = "\u2581"

# Pre-tokenizers of byte-level vocabularies, by llama.cpp's ``tokenizer.ggml.pre`` name.
_LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                 r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
BYTE_LEVEL_PRE = {
    "default": ("gpt2", False),
    "gpt2": ("gpt2", False),
    "smollm": ("gpt2", True),  # every digit alone, then GPT-2's split (SmolLM2's own tokenizer.json)
    "llama-bpe": ("llama3", False),
}


@dataclass
class GGUFTokenizerSpec:
    """The tokenizer a GGUF file describes, as its metadata states it."""

    model: str
    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    architecture: str = ""
    chat_template: str | None = None

    def token(self, index: int | None) -> str | None:
        """The token spelled at ``index`` (None for None)."""
        return None if index is None else self.tokens[index]


def read_tokenizer_spec(path: str | Path) -> GGUFTokenizerSpec:
    """Read the ``tokenizer.ggml.*`` metadata of a GGUF file (no tensor is loaded)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ConfigError("reading a .gguf file needs the 'gguf' package (pip install contrastkit[gguf])") from None
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read GGUF file {path}: {err}") from None

    def get(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    model = get("tokenizer.ggml.model")
    tokens = get("tokenizer.ggml.tokens")
    if model is None or tokens is None:
        raise ConfigError(f"{path}: the GGUF file has no tokenizer (tokenizer.ggml.model/tokens missing)")
    return GGUFTokenizerSpec(
        model=model, pre=get("tokenizer.ggml.pre", "default"), tokens=list(tokens),
        token_types=list(get("tokenizer.ggml.token_type", [1] * len(tokens))),
        merges=list(get("tokenizer.ggml.merges", [])), scores=list(get("tokenizer.ggml.scores", [])),
        bos_id=get("tokenizer.ggml.bos_token_id"), eos_id=get("tokenizer.ggml.eos_token_id"),
        unk_id=get("tokenizer.ggml.unknown_token_id"), pad_id=get("tokenizer.ggml.padding_token_id"),
        # llama.cpp adds BOS to a SentencePiece vocabulary whose file does not say otherwise
        add_bos=bool(get("tokenizer.ggml.add_bos_token", model == "llama")),
        add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(get("tokenizer.ggml.add_space_prefix", model == "llama")),
        architecture=get("general.architecture", ""), chat_template=get("tokenizer.chat_template"))


def _byte_level(spec: GGUFTokenizerSpec) -> Any:
    """Byte-level BPE (``gpt2`` vocabularies): the file's vocabulary and merges, its pre-tokenizer split."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    if spec.pre not in BYTE_LEVEL_PRE:
        raise ConfigError(f"GGUF pre-tokenizer '{spec.pre}' is not supported; supported: "
                          f"{', '.join(sorted(BYTE_LEVEL_PRE))}")
    split, digits = BYTE_LEVEL_PRE[spec.pre]
    vocab = {t: i for i, t in enumerate(spec.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in spec.merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    steps = [pre_tokenizers.Digits(individual_digits=True)] if digits else []
    if split == "gpt2":
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    else:
        steps += [pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
                  pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    return tok


def spm_merges(spec: GGUFTokenizerSpec) -> list[tuple[str, str]]:
    """Merges of a SentencePiece BPE vocabulary, best first: every split of a token into two tokens.

    The file lists no merges, so they are rebuilt from the vocabulary. A merge's rank is its result's
    rank: the score where scores order the merges (llama), the position in the file for Gemma, whose
    scores do not follow its merge order.
    """
    vocab = {t: i for i, t in enumerate(spec.tokens)}
    if spec.architecture.startswith("gemma") or not spec.scores:
        rank = dict(vocab)
    else:
        rank = {t: -spec.scores[i] for t, i in vocab.items()}
    normal = [t for i, t in enumerate(spec.tokens) if spec.token_types[i] == 1 and len(t) > 1]
    found = []
    for t in normal:
        for cut in range(1, len(t)):
            left, right = t[:cut], t[cut:]
            if left in vocab and right in vocab:
                found.append((rank[t], vocab[left], vocab[right], left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def _sentencepiece(spec: GGUFTokenizerSpec) -> Any:
    """SentencePiece-style BPE (``llama`` vocabularies) with byte fallback, spaces spelled as U+2581."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    vocab = {t: i for i, t in enumerate(spec.tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=spm_merges(spec), unk_token=spec.token(spec.unk_id),
                               fuse_unk=True, byte_fallback=True))
    norm = [normalizers.Replace(" ", _SPIECE_SPACE)]
    dec = [decoders.Replace(_SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_space_prefix:
        norm.insert(0, normalizers.Prepend(_SPIECE_SPACE))
        dec.append(decoders.Strip(" ", 1, 0))
    tok.normalizer = normalizers.Sequence(norm)
    tok.decoder = decoders.Sequence(dec)
    return tok


def build_tokenizer(spec: GGUFTokenizerSpec) -> Any:
    """A ``PreTrainedTokenizerFast`` exactly as the GGUF metadata describes it (specials, BOS/EOS flags)."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    if spec.model == "gpt2":
        tok = _byte_level(spec)
    elif spec.model == "llama":
        # Tokens of two or more spaces are stored as real spaces; the model sees U+2581 for each.
        spec = dataclasses.replace(spec, tokens=[_SPIECE_SPACE * len(t) if t and not t.strip(" ") else t
                                                 for t in spec.tokens])
        tok = _sentencepiece(spec)
    else:
        raise ConfigError(f"GGUF tokenizer model '{spec.model}' is not supported (supported: gpt2, llama)")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(spec.tokens, spec.token_types) if kind == _CONTROL])
    # user-defined tokens match the normalized text (a SentencePiece vocabulary spells spaces as U+2581)
    tok.add_tokens([AddedToken(t, special=False, normalized=True)
                    for t, kind in zip(spec.tokens, spec.token_types) if kind == _USER_DEFINED])
    bos, eos = spec.token(spec.bos_id), spec.token(spec.eos_id)
    pre = [bos] if spec.add_bos and bos else []
    post = [eos] if spec.add_eos and eos else []
    if pre or post:
        single = " ".join([*pre, "$A", *post])
        pair = " ".join([*pre, "$A", *post, *pre, "$B:1", *post])
        specials = [(t, spec.tokens.index(t)) for t in dict.fromkeys(pre + post)]
        tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=spec.token(spec.unk_id),
        pad_token=spec.token(spec.pad_id) or eos, clean_up_tokenization_spaces=False,
        chat_template=spec.chat_template)


def load_tokenizer(directory: str | Path) -> Any:
    """Load a converted directory's tokenizer by its own class (``PreTrainedTokenizerFast``), no guessing."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(directory))


def is_converted(directory: str | Path) -> bool:
    """Whether ``directory`` was written by :func:`convert_gguf` (or a model saved from one)."""
    return (Path(directory) / MARKER).is_file()


def convert_gguf(gguf_path: str | Path) -> Path:
    """Dequantize a GGUF checkpoint once into a safetensors directory under the cache; return it."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ConfigError(f"GGUF file not found: {gguf_path}")
    target = cache_dir() / "gguf" / f"{gguf_path.stem}-{gguf_path.stat().st_size}-v{CONVERTER_VERSION}"
    if (target / MARKER).is_file():
        return target
    spec = read_tokenizer_spec(gguf_path)
    tok = build_tokenizer(spec)
    log.info("converting %s to %s (one time)", gguf_path, target)
    model = AutoModel.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tmp = fresh_tmp_dir(target)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(json.dumps({"source": str(gguf_path), "converter_version": CONVERTER_VERSION,
                                          "tokenizer": {"model": spec.model, "pre": spec.pre,
                                                        "add_bos": spec.add_bos,
                                                        "chat_template": spec.chat_template is not None}},
                                          indent=2))
    replace_dir(tmp, target)
    return target
