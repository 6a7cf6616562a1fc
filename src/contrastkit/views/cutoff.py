"""ConSERT's embedding-level views (Yan et al., 2021): token shuffle, token cutoff, feature cutoff.

They act at the embedding layer of a Hugging Face backbone: the word embeddings of the batch
are looked up once, edited, and fed back through ``backbone(inputs_embeds=..., position_ids=...)``;
position and token-type embeddings, LayerNorm and dropout are then added by the backbone as usual.
(ConSERT's own code edits the output of BERT's whole embedding layer; editing the word
embeddings is the form every HF backbone accepts.) Only real tokens (``attention_mask == 1``) are
ever shuffled or cut; the attention mask and padding are left alone. All randomness comes from
the ``torch.Generator`` passed in (a CPU generator is fine for tensors on any device).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..encoders.pooling import needs_all_hidden_states, pool

EMBEDDING_VIEWS = ("none", "token_shuffle", "token_cutoff", "feature_cutoff")


def _check_ratio(ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"cutoff ratio must be in [0, 1), got {ratio}")


def default_position_ids(features: dict[str, Tensor]) -> Tensor:
    """Position ids of a tokenized batch: its own ``position_ids`` or 0..T-1 per row (as BERT assumes)."""
    if "position_ids" in features:
        return features["position_ids"].clone()
    b, t = features["input_ids"].shape
    return torch.arange(t, device=features["input_ids"].device).expand(b, t).clone()


def token_shuffle(features: dict[str, Tensor], generator: torch.Generator) -> Tensor:
    """Position ids with each row's real-token positions randomly permuted (ConSERT, Yan et al., 2021)."""
    pos = default_position_ids(features)
    mask = features["attention_mask"].bool()
    for i in range(pos.shape[0]):
        idx = mask[i].nonzero(as_tuple=True)[0]
        perm = torch.randperm(idx.numel(), generator=generator).to(idx.device)
        pos[i, idx] = pos[i, idx[perm]]
    return pos


def token_cutoff_mask(attention_mask: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """(B, T) bool mask of the int(ratio * length) real tokens per row that token cutoff erases (ConSERT)."""
    _check_ratio(ratio)
    real = attention_mask.bool()
    cut = torch.zeros_like(real)
    for i in range(real.shape[0]):
        idx = real[i].nonzero(as_tuple=True)[0]
        k = int(idx.numel() * ratio)
        chosen = torch.randperm(idx.numel(), generator=generator)[:k].to(idx.device)
        cut[i, idx[chosen]] = True
    return cut


def token_cutoff(inputs_embeds: Tensor, attention_mask: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """Zero int(ratio * length) whole real-token rows per text of (B, T, d) embeddings (ConSERT, Yan et al., 2021)."""
    cut = token_cutoff_mask(attention_mask, ratio, generator)
    return inputs_embeds.masked_fill(cut.unsqueeze(-1), 0.0)


def feature_cutoff_mask(batch: int, dim: int, ratio: float, generator: torch.Generator,
                        device: torch.device | str = "cpu") -> Tensor:
    """(B, d) bool mask of the int(ratio * d) embedding columns per text that feature cutoff erases (ConSERT)."""
    _check_ratio(ratio)
    k = int(dim * ratio)
    cut = torch.zeros(batch, dim, dtype=torch.bool)
    for i in range(batch):
        cut[i, torch.randperm(dim, generator=generator)[:k]] = True
    return cut.to(device)


def feature_cutoff(inputs_embeds: Tensor, ratio: float, generator: torch.Generator) -> Tensor:
    """Zero int(ratio * d) embedding columns per text, across all its tokens (ConSERT, Yan et al., 2021)."""
    b, _, d = inputs_embeds.shape
    cut = feature_cutoff_mask(b, d, ratio, generator, inputs_embeds.device)
    return inputs_embeds.masked_fill(cut.unsqueeze(1), 0.0)


def embedding_view_inputs(backbone: Any, features: dict[str, Tensor], kind: str, ratio: float,
                          generator: torch.Generator) -> dict[str, Tensor]:
    """Backbone keyword arguments (inputs_embeds, attention_mask, ...) for ConSERT view ``kind``."""
    if kind not in EMBEDDING_VIEWS:
        raise ValueError(f"unknown embedding view '{kind}'; known: {', '.join(EMBEDDING_VIEWS)}")
    embeds = backbone.get_input_embeddings()(features["input_ids"])
    kwargs: dict[str, Tensor] = {"attention_mask": features["attention_mask"]}
    if "token_type_ids" in features:
        kwargs["token_type_ids"] = features["token_type_ids"]
    if kind == "token_shuffle":
        kwargs["position_ids"] = token_shuffle(features, generator)
    elif kind == "token_cutoff":
        embeds = token_cutoff(embeds, features["attention_mask"], ratio, generator)
    elif kind == "feature_cutoff":
        embeds = feature_cutoff(embeds, ratio, generator)
    elif "position_ids" in features:
        kwargs["position_ids"] = features["position_ids"]
    kwargs["inputs_embeds"] = embeds
    return kwargs


def embed_with_cutoff(encoder: Any, features: dict[str, Tensor], kind: str, ratio: float,
                      generator: torch.Generator) -> Tensor:
    """Pooled (N, d) embeddings of a tokenized batch under ConSERT view ``kind`` (Yan et al., 2021).

    ``kind`` is one of 'none', 'token_shuffle', 'token_cutoff', 'feature_cutoff'; pooling and the
    training-time MLP head follow ``Encoder.forward``.
    """
    kwargs = embedding_view_inputs(encoder.backbone, features, kind, ratio, generator)
    want_all = needs_all_hidden_states(encoder.pooling)
    out = encoder.backbone(**kwargs, output_hidden_states=want_all, return_dict=True)
    emb = pool(encoder.pooling, out.hidden_states if want_all else None, out.last_hidden_state,
               features["attention_mask"])
    if getattr(encoder, "head", None) is not None and encoder.training:
        emb = encoder.head(emb)
    return emb


__all__ = ["EMBEDDING_VIEWS", "default_position_ids", "embed_with_cutoff", "embedding_view_inputs",
           "feature_cutoff", "feature_cutoff_mask", "token_cutoff", "token_cutoff_mask", "token_shuffle"]
