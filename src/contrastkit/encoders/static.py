"""StaticEncoder: a token-embedding table + tokenizer; a text's embedding is the mean of its token vectors.

The static-embedding family: Wada et al., "Static Word Embeddings for Sentence Semantic
Representation" (2025); Model2Vec (Tulkens and van Dongen, 2024). A per-token weight (SIF,
Arora et al. 2017) is folded into each row's norm, so the mean is a weighted mean.
Encoding is one tokenizer call and one ``embedding_bag``: no transformer runs.

A saved model directory holds ``model.safetensors`` (key ``embedding.weight``), ``tokenizer.json``,
``contrastkit_static.json`` and the ``modules.json`` of a sentence-transformers
``StaticEmbedding`` (+ ``Normalize``), so ``SentenceTransformer(path)`` loads it too.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..fsutil import fresh_tmp_dir, replace_dir
from .st_module import write_st_pipeline

STATIC_CONFIG = "contrastkit_static.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"


def is_static_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory written by :meth:`StaticEncoder.save`."""
    return (Path(path) / STATIC_CONFIG).is_file()


class StaticEncoder:
    """Sentence encoder that averages rows of a token-embedding table (no contextual model at inference)."""

    def __init__(self, vectors: np.ndarray | Tensor, tokenizer: Any, *, normalize: bool = True,
                 max_length: int | None = None, meta: dict[str, Any] | None = None) -> None:
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):  # a transformers fast tokenizer: take its Rust backend
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is None:
                raise ConfigError(f"StaticEncoder needs a fast (tokenizers) tokenizer, got {type(tokenizer).__name__}")
            tokenizer = Tokenizer.from_str(backend.to_str())
        tokenizer.no_padding()
        tokenizer.no_truncation()
        weight = torch.as_tensor(np.asarray(vectors, dtype=np.float32) if not isinstance(vectors, Tensor)
                                 else vectors.detach().float()).contiguous()
        if weight.ndim != 2:
            raise ConfigError(f"StaticEncoder vectors must be (vocab, dim), got shape {tuple(weight.shape)}")
        if weight.shape[0] < tokenizer.get_vocab_size():
            raise ConfigError(f"StaticEncoder table has {weight.shape[0]} rows but the tokenizer has "
                              f"{tokenizer.get_vocab_size()} tokens")
        if max_length is not None and max_length < 1:
            raise ConfigError(f"max_length must be positive or None, got {max_length}")
        self.weight = weight
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.max_length = max_length
        self.meta = dict(meta or {})

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.weight.shape[1])

    @property
    def vocab_size(self) -> int:
        """Rows of the token table."""
        return int(self.weight.shape[0])

    @property
    def device(self) -> torch.device:
        """Always the CPU: the table lives there."""
        return self.weight.device

    # -- tokenization -----------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Flat token ids of all texts and each text's start offset (the ``embedding_bag`` input)."""
        encs = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ids = [e.ids for e in encs]
        if self.max_length is not None:
            ids = [x[:self.max_length] for x in ids]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return torch.from_numpy(flat), torch.from_numpy(offsets)

    def embed_ids(self, flat: Tensor, offsets: Tensor, weight: Tensor | None = None) -> Tensor:
        """Mean of the token rows of each text (texts without tokens get a zero vector)."""
        return F.embedding_bag(flat, self.weight if weight is None else weight, offsets, mode="mean")

    # -- inference --------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 1024, normalize: bool | None = None,
               convert_to: Literal["numpy", "torch"] = "numpy", precision: str = "fp32",
               show_progress: bool = False) -> np.ndarray | Tensor:
        """Embed texts (same signature as :meth:`Encoder.encode`; ``precision`` is accepted and ignored)."""
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, not a single string")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        starts = range(0, len(texts), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encode", unit="batch")
        for s in starts:
            flat, offsets = self.token_ids(texts[s:s + batch_size])
            out[s:s + len(offsets)] = self.embed_ids(flat, offsets)
        if self.normalize if normalize is None else normalize:
            out = F.normalize(out, dim=-1)
        return out if convert_to == "torch" else out.numpy()

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write safetensors + tokenizer.json + JSON config (atomically: a temporary dir renamed)."""
        from safetensors.torch import save_file

        path = Path(path)
        tmp = fresh_tmp_dir(path)
        save_file({"embedding.weight": self.weight.contiguous()}, str(tmp / WEIGHTS_FILE))
        self.tokenizer.save(str(tmp / TOKENIZER_FILE))
        config = {"kind": "static", "format_version": 1, "dim": self.dim, "vocab_size": self.vocab_size,
                  "normalize": self.normalize, "max_length": self.max_length, **self.meta}
        (tmp / STATIC_CONFIG).write_text(json.dumps(config, indent=2))
        write_st_pipeline(tmp, [{"idx": 0, "name": "0", "path": "",
                                 "type": "sentence_transformers.models.StaticEmbedding"}], normalize=self.normalize)
        return replace_dir(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StaticEncoder:
        """Load a directory written by :meth:`save`."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        if not is_static_dir(path):
            raise ConfigError(f"{path}: not a static model directory (no {STATIC_CONFIG})")
        config = json.loads((path / STATIC_CONFIG).read_text())
        weights = load_file(str(path / WEIGHTS_FILE))
        if "embedding.weight" not in weights:
            raise ConfigError(f"{path / WEIGHTS_FILE}: no tensor 'embedding.weight'")
        tok = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        known = {"kind", "format_version", "dim", "vocab_size", "normalize", "max_length"}
        return cls(weights["embedding.weight"], tok, normalize=bool(config.get("normalize", True)),
                   max_length=config.get("max_length"), meta={k: v for k, v in config.items() if k not in known})
