"""Run contrastkit encoders in MTEB (Muennighoff et al., 2023) through its encoder protocol (mteb 2.x).

``mteb.evaluate(to_mteb("runs/simcse/model"), mteb.get_tasks(tasks=["STSBenchmark"]))``
evaluates a contrastkit model with MTEB's own task code. :class:`MTEBModel` implements
``mteb.models.EncoderProtocol``: ``encode(inputs: DataLoader[BatchedInput], *, task_metadata,
hf_split, hf_subset, prompt_type, **kwargs)`` returning one row per input text, plus
``mteb_model_meta`` (a ``ModelMeta`` with cosine similarity) and the similarity functions of
``AbsEncoder``.

Prompts: an encoder saved with a prompt template applies it itself; MTEB's per-task
instructions are not added (contrastkit models are not instruction-tuned).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
except ImportError as err:  # pragma: no cover - depends on the installation
    raise ImportError("the MTEB adapter needs the 'mteb' package: pip install 'contrastkit[mteb]'") from err

from ..encoders.encoder import Encoder

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import BatchedInput, PromptType
    from torch.utils.data import DataLoader

__all__ = ["MTEBModel", "to_mteb"]


def _model_name(label: str) -> str:
    """MTEB wants 'organization/model_name'; contrastkit models become 'contrastkit/<dir name>'."""
    name = Path(label).name if os.sep in label or Path(label).exists() else label
    name = name.replace("/", "_") or "model"
    return f"contrastkit/{name}"


class MTEBModel(AbsEncoder):
    """A contrastkit :class:`Encoder` behind MTEB's encoder protocol (cosine similarity)."""

    def __init__(self, encoder: Encoder, *, name: str = "model", revision: str | None = None,
                 batch_size: int | None = None, precision: str = "fp32") -> None:
        self.model = encoder
        self.batch_size = batch_size
        self.precision = precision
        n_params = sum(p.numel() for p in encoder.parameters())
        self.mteb_model_meta = ModelMeta.create_empty(overwrites=dict(
            name=_model_name(name), revision=revision, embed_dim=encoder.dim, max_tokens=encoder.max_length,
            n_parameters=n_params, similarity_fn_name=ScoringFunction.COSINE, framework=["PyTorch"],
            use_instructions=bool(encoder.prompt_template), open_weights=True,
            loader=None, modalities=["text"]))

    def encode(self, inputs: DataLoader[BatchedInput], *, task_metadata: TaskMetadata, hf_split: str,
               hf_subset: str, prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        """Embed every text of ``inputs`` (batches of ``{"text": [...]}``), in order, as float32 rows."""
        texts: list[str] = []
        for batch in inputs:
            if "text" not in batch:
                raise ValueError(f"{task_metadata.name}: the MTEB adapter embeds text only; got a batch with "
                                 f"{sorted(batch)} (split {hf_split}, subset {hf_subset})")
            texts.extend(str(t) for t in batch["text"])
        batch_size = self.batch_size or int(kwargs.get("batch_size") or 64)
        emb = self.model.encode(texts, batch_size=batch_size, precision=self.precision,
                                show_progress=bool(kwargs.get("show_progress_bar", False)))
        return np.asarray(emb, dtype=np.float32)


def to_mteb(path_or_encoder: str | os.PathLike[str] | Encoder, **kwargs: Any) -> MTEBModel:
    """Wrap a model directory, hub name, alias or loaded :class:`Encoder` for ``mteb.evaluate``."""
    if isinstance(path_or_encoder, Encoder):
        kwargs.setdefault("name", "model")
        return MTEBModel(path_or_encoder, **kwargs)
    label = str(path_or_encoder)
    kwargs.setdefault("name", label)
    return MTEBModel(Encoder.from_pretrained(label), **kwargs)
