"""Causal language models as contrastkit loads them: GGUF checkpoints with a verified tokenizer."""

from .gguf import CONVERTER_VERSION, build_tokenizer, convert_gguf, read_tokenizer_spec

__all__ = ["CONVERTER_VERSION", "build_tokenizer", "convert_gguf", "read_tokenizer_spec"]
