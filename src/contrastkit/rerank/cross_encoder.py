"""A cross-encoder reranker: (query, document) -> one relevance logit, saved so ``sentence_transformers.CrossEncoder``
loads it.

The model is ``AutoModelForSequenceClassification`` with one label over any local encoder checkpoint
(e.g. ``all-MiniLM-L6-v2``; its classification head starts random), as in Nogueira and Cho, "Passage
Re-ranking with BERT", 2019. Scores are ``sigmoid(logit)`` by default, the activation
sentence-transformers applies to one-label cross-encoders; the saved ``config.json`` names it
(``sentence_transformers.activation_fn``) so ``CrossEncoder(path).predict`` gives the same numbers.
Training lives in :mod:`contrastkit.rerank.training`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..fsutil import fresh_tmp_dir, replace_dir

__all__ = ["ST_SIGMOID", "CrossEncoderReranker"]

ST_SIGMOID = "torch.nn.modules.activation.Sigmoid"
"""The activation sentence-transformers applies to a one-label cross-encoder (dotted path as it saves it)."""
META_FILE = "contrastkit_reranker.json"


class CrossEncoderReranker(torch.nn.Module):
    """Scores (query, document) pairs jointly with a one-label sequence classifier (a cross-encoder)."""

    def __init__(self, model: Any, tokenizer: Any, *, max_length: int = 256) -> None:
        super().__init__()
        if int(getattr(model.config, "num_labels", 1)) != 1:
            raise ConfigError(f"a cross-encoder reranker has one output label; this model has "
                              f"{model.config.num_labels}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, max_length: int | None = None,
                        seed: int = 0) -> CrossEncoderReranker:
        """Load a saved cross-encoder, or start one from an encoder checkpoint (dir, hub name or alias).

        Starting from an encoder adds a new one-label head initialised with ``seed``.
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from ..encoders.backbones import resolve_alias

        path = resolve_alias(str(name_or_path))
        try:
            cfg = AutoConfig.from_pretrained(path)
            fresh = not any(a.endswith("ForSequenceClassification") for a in (cfg.architectures or []))
            torch.manual_seed(seed)
            verbosity = hf_logging.get_verbosity()
            if fresh:  # the "newly initialized classifier" warning is the point here
                hf_logging.set_verbosity_error()
            try:
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
            finally:
                hf_logging.set_verbosity(verbosity)
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load cross-encoder '{name_or_path}': {err}") from None
        limit = getattr(tok, "model_max_length", None)
        default = int(limit) if isinstance(limit, int) and 0 < limit <= 100_000 else 512
        meta_file = Path(path) / META_FILE
        if meta_file.is_file():
            default = int(json.loads(meta_file.read_text()).get("max_length", default))
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:  # sentence-transformers caps at it too
            default = min(default, positions)
        return cls(model.eval(), tok, max_length=max_length or min(default, 512))

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def tokenize(self, queries: Sequence[str], documents: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize pairs as one padded batch (longest-first truncation to ``max_length``, as sentence-transformers)."""
        feats = self.tokenizer(list(queries), list(documents), padding=True, truncation="longest_first",
                               max_length=self.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in feats.items()}

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Relevance logits ``(n,)`` of a tokenized batch (with gradients in training)."""
        return self.model(**features, return_dict=True).logits.squeeze(-1)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> Tensor:
        """Logits ``(n,)`` of pairs in one forward pass, with gradients (for training)."""
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
        return self(self.tokenize(queries, documents))

    @torch.inference_mode()
    def predict(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 32, activation: bool = True,
                show_progress: bool = False) -> np.ndarray:
        """Scores of (query, document) pairs in length-sorted batches: ``sigmoid(logit)`` (or the logit)."""
        pairs = [(str(q), str(d)) for q, d in pairs]
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        was_training = self.training
        self.eval()
        order = np.argsort([-(len(q) + len(d)) for q, d in pairs], kind="stable")
        out = np.empty(len(pairs), dtype=np.float32)
        starts: Any = range(0, len(order), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="rerank", unit="batch")
        try:
            for start in starts:
                idx = order[start:start + batch_size]
                logits = self.score_pairs([pairs[i][0] for i in idx], [pairs[i][1] for i in idx]).float()
                out[idx] = (torch.sigmoid(logits) if activation else logits).cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def save(self, path: str | Path) -> Path:
        """Write safetensors + config so that ``sentence_transformers.CrossEncoder(path)`` gives the same scores."""
        path = Path(path)
        tmp = fresh_tmp_dir(path)
        cfg = self.model.config
        cfg.sentence_transformers = {"activation_fn": ST_SIGMOID}
        self.model.save_pretrained(str(tmp), safe_serialization=True)
        saved_limit = self.tokenizer.model_max_length
        self.tokenizer.model_max_length = self.max_length  # where CrossEncoder reads its truncation length
        try:
            self.tokenizer.save_pretrained(str(tmp))
        finally:
            self.tokenizer.model_max_length = saved_limit
        (tmp / META_FILE).write_text(json.dumps({"kind": "cross-encoder", "max_length": self.max_length,
                                                 "activation": "sigmoid", "format_version": 1}, indent=2))
        return replace_dir(tmp, path)
