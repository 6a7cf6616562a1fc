"""One loader for causal LMs with their LM head: hub names, local dirs, .gguf files and the offline aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError


def load_causal_lm(name: str | Path, *, dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` of a causal LM for generation: ``AutoModelForCausalLM`` in eval mode and its
    tokenizer set to pad on the left (with EOS as the pad token when it has none).

    ``name``: a hub name, a local directory, a ``.gguf`` file or an offline alias (``smollm2-135m``,
    ``gemma3-270m``); GGUF files are converted once (dequantized weights + a tokenizer built from the file's own
    metadata, :mod:`contrastkit.lm.gguf`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..encoders.backbones import resolve_alias
    from .gguf import convert_gguf, is_converted, load_tokenizer

    path = resolve_alias(str(name))
    if path.endswith(".gguf"):
        path = str(convert_gguf(path))
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        tok = load_tokenizer(path) if is_converted(path) else AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load causal LM '{name}': {err}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "left"
    if device is not None:
        model.to(device)
    return model.eval(), tok
