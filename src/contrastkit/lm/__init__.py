"""Causal language models as contrastkit loads them: GGUF checkpoints with a verified tokenizer, causal-LM heads."""

from .causal import load_causal_lm
from .gguf import CONVERTER_VERSION, build_tokenizer, convert_gguf, read_tokenizer_spec

__all__ = ["CONVERTER_VERSION", "build_tokenizer", "convert_gguf", "load_causal_lm", "read_tokenizer_spec"]
