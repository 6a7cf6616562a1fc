"""Views from the config: ``views: {name, num_views, apply_to, <view params>}`` -> the trainer's embed function.

Every view turns a batch of single texts into ``num_views`` embeddings per text; view 0 is the
anchor, view 1 the positive, views 2.. (poly-view) go to the loss as ``extras["extra_positives"]``
(see ``contrastkit.losses.inputs``). Dropout stays on in every view (as in CLEAR, ESimCSE, ConSERT).
``apply_to: positive`` (default) leaves the anchor unedited; ``both`` edits every view independently.

Randomness: one seed per batch is drawn from torch's global generator, which the trainer seeds from
``train.seed`` and saves in every checkpoint, so edits differ from step to step and a resumed run
sees exactly the views an uninterrupted run would have seen.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.examples import Example
from ..encoders.pooling import needs_all_hidden_states, pool
from ..errors import DataError
from ..training.batch import Embedded
from . import embed_batch
from .cutoff import default_position_ids, embedding_view_inputs
from .edits import PAIR_SAMPLERS, TEXT_EDITS
from .self_guided import SelfGuidedView


@dataclass(frozen=True)
class ViewSpec:
    """A registered view: its family, its options (name -> default) and its paper."""

    family: str  # dropout | edit | pair | embedding | layer
    options: dict[str, Any]
    paper: str

    @property
    def edits_anchor(self) -> bool:
        """Whether ``apply_to: both`` means something for this view."""
        return self.family in ("edit", "embedding")


def _fn_options(fn: Callable[..., Any], skip: int = 2) -> dict[str, Any]:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return {p.name: p.default for p in params if p.name != "wordnet"}


_EDIT_PAPERS = {"word_deletion": "CLEAR (Wu et al., 2020)", "span_deletion": "CLEAR (Wu et al., 2020)",
                "reorder": "CLEAR (Wu et al., 2020)", "synonym_substitution": "CLEAR (Wu et al., 2020)",
                "word_repetition": "ESimCSE (Wu et al., 2022)", "crop": "SimCSE crop ablation (Gao et al., 2021)"}

VIEWS: dict[str, ViewSpec] = {
    "dropout": ViewSpec("dropout", {}, "SimCSE (Gao et al., 2021)"),
    "token_shuffle": ViewSpec("embedding", {}, "ConSERT (Yan et al., 2021)"),
    "token_cutoff": ViewSpec("embedding", {"ratio": 0.1}, "ConSERT (Yan et al., 2021)"),
    "feature_cutoff": ViewSpec("embedding", {"ratio": 0.2}, "ConSERT (Yan et al., 2021)"),
    **{name: ViewSpec("edit", _fn_options(fn), _EDIT_PAPERS[name]) for name, fn in TEXT_EDITS.items()},
    **{name: ViewSpec("pair", _fn_options(fn), "DeCLUTR (Giorgi et al., 2021)") for name, fn in PAIR_SAMPLERS.items()},
    "self_guided": ViewSpec("layer", {"layer": None, "layer_pooling": "max"}, "Self-Guided CL (Kim et al., 2021)"),
}
"""Every view the ``views`` config section can name."""


def draw_seed() -> int:
    """A per-batch seed from torch's global generator (seeded by the trainer, saved in checkpoints)."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


def _embed_embedding_views(encoder: Any, features: dict[str, Tensor], kinds: Sequence[str], ratio: float,
                           generator: torch.Generator) -> list[Tensor]:
    """One backbone forward over all ConSERT views of a batch; returns one (N, d) tensor per view."""
    parts = [embedding_view_inputs(encoder.backbone, features, k, ratio, generator) for k in kinds]
    if any("position_ids" in p for p in parts):
        for p in parts:
            p.setdefault("position_ids", default_position_ids(features))
    kwargs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    want_all = needs_all_hidden_states(encoder.pooling)
    out = encoder.backbone(**kwargs, output_hidden_states=want_all, return_dict=True)
    emb = pool(encoder.pooling, out.hidden_states if want_all else None, out.last_hidden_state,
               kwargs["attention_mask"])
    if getattr(encoder, "head", None) is not None and encoder.training:
        emb = encoder.head(emb)
    return list(emb.float().chunk(len(kinds)))


class ViewEmbedder:
    """The trainer's embed function: ``(encoder, examples) -> Embedded`` with views and per-row loss inputs.

    Pairs and triplets are embedded column by column (``embed_batch``); single texts get the
    configured view. ``teacher`` adds ``teacher_anchor`` / ``teacher_positive`` /
    ``teacher_negatives`` (teacher embeddings of the texts behind each row) to ``extras``;
    ``scores`` adds the examples' gold scores as ``extras["scores"]``.
    """

    def __init__(self, view: str = "dropout", params: dict[str, Any] | None = None, *, num_views: int = 2,
                 apply_to: str = "positive", length_buckets: int = 1, teacher: Any = None, scores: bool = False,
                 self_guided: SelfGuidedView | None = None) -> None:
        if view not in VIEWS:
            raise ValueError(f"unknown view '{view}'; known: {', '.join(VIEWS)}")
        self.view, self.spec = view, VIEWS[view]
        self.params = {**self.spec.options, **(params or {})}
        self.num_views = num_views
        self.apply_to = apply_to
        self.length_buckets = length_buckets
        self.teacher = teacher
        self.scores = scores
        if self.spec.family == "layer" and self_guided is None:
            raise ValueError("view 'self_guided' needs a SelfGuidedView (a frozen copy of the encoder)")
        self.self_guided = self_guided

    # -- views of single texts ----------------------------------------------------------------
    def _edit_views(self, encoder: Any, texts: list[str], rng: random.Random) -> tuple[list[Tensor], list[list[str]]]:
        fn = TEXT_EDITS[self.view]
        view_texts = [texts if v == 0 and self.apply_to == "positive" else [fn(t, rng, **self.params) for t in texts]
                      for v in range(self.num_views)]
        flat = [t for vt in view_texts for t in vt]
        emb = encoder.embed_texts(flat, buckets=self.length_buckets).float()
        return list(emb.chunk(self.num_views)), view_texts

    def _pair_views(self, encoder: Any, texts: list[str], rng: random.Random) -> tuple[list[Tensor], list[list[str]]]:
        pairs = [PAIR_SAMPLERS[self.view](t, rng, **self.params) for t in texts]
        view_texts = [[a for a, _ in pairs], [p for _, p in pairs]]
        emb = encoder.embed_texts(view_texts[0] + view_texts[1], buckets=self.length_buckets).float()
        return list(emb.chunk(2)), view_texts

    def _single_views(self, encoder: Any, texts: list[str]) -> tuple[list[Tensor], list[list[str]]]:
        family, v = self.spec.family, self.num_views
        if family == "dropout":
            emb = encoder.embed_texts(texts * v, buckets=self.length_buckets).float()
            return list(emb.chunk(v)), [texts] * v
        seed = draw_seed()
        if family == "edit":
            return self._edit_views(encoder, texts, random.Random(seed))
        if family == "pair":
            return self._pair_views(encoder, texts, random.Random(seed))
        gen = torch.Generator().manual_seed(seed)
        features = encoder.tokenize(texts)
        if family == "embedding":
            first = self.view if self.apply_to == "both" else "none"
            kinds = [first] + [self.view] * (v - 1)
            return _embed_embedding_views(encoder, features, kinds, self.params.get("ratio", 0.0), gen), [texts] * v
        assert self.self_guided is not None
        anchor = encoder(features).float()
        positives = self.self_guided.positives(features, self.self_guided.layers(v - 1, gen))
        return [anchor, *positives], [texts] * v

    # -- the embed function -------------------------------------------------------------------
    def __call__(self, encoder: Any, examples: Sequence[Example]) -> Embedded:
        """Embed a batch into anchor, positive, negatives and the extras the loss needs."""
        width = len(examples[0].texts)
        if any(len(e.texts) != width for e in examples):
            raise ValueError("all examples of a batch must have the same number of texts")
        if width > 1 or (self.spec.family == "dropout" and self.num_views == 2):
            anchor, positive, negatives = embed_batch(encoder, examples, length_buckets=self.length_buckets)
            out = Embedded(anchor, positive, negatives)
            columns = [[e.texts[c] for e in examples] for c in range(width)]
            if width == 1:
                columns = columns * 2
        else:
            texts = [e.texts[0] for e in examples]
            views, view_texts = self._single_views(encoder, texts)
            out = Embedded(views[0], views[1], None)
            if len(views) > 2:
                out.extras["extra_positives"] = torch.stack(views[2:], dim=1)
            columns = view_texts[:2]
        if self.scores:
            if any(e.score is None for e in examples):
                raise DataError("the loss needs a gold score per example, but a batch holds examples without one "
                                "(use data.kind 'scored' with a score column)")
            out.extras["scores"] = torch.tensor([e.score for e in examples], dtype=torch.float32,
                                                device=out.anchor.device)
        if self.teacher is not None:
            out.extras.update(self._teacher_extras(columns, out.anchor.device))
        return out

    def _teacher_extras(self, columns: list[list[str]], device: torch.device) -> dict[str, Tensor]:
        unique = list(dict.fromkeys(t for col in columns for t in col))
        index = {t: i for i, t in enumerate(unique)}
        emb = self.teacher.embed(unique).to(device)
        cols = [emb[torch.tensor([index[t] for t in col], device=device)] for col in columns]
        extras = {"teacher_anchor": cols[0], "teacher_positive": cols[1]}
        if len(cols) > 2:
            extras["teacher_negatives"] = torch.stack(cols[2:], dim=1)
        return extras


__all__ = ["VIEWS", "ViewEmbedder", "ViewSpec", "draw_seed"]
