"""Placeholder module named in ``modules.json`` for poolers sentence-transformers cannot express.

``first_last_avg`` and ``prompt`` pooling have no sentence-transformers equivalent. Rather than
let ``SentenceTransformer(path)`` fall back to mean pooling and silently give other embeddings,
such model directories name this module, whose loading fails with a clear message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ContrastkitError


class ContrastkitModule:
    """Refuses to load in sentence-transformers, pointing to ``contrastkit.Encoder`` instead."""

    @classmethod
    def load(cls, model_name_or_path: str, *args: Any, **kwargs: Any) -> ContrastkitModule:
        """Raise: this pooler only exists in contrastkit."""
        raise ContrastkitError(
            f"{model_name_or_path} uses a pooler that sentence-transformers cannot express "
            "(first_last_avg or prompt); load it with contrastkit.Encoder.from_pretrained(path)")


def write_st_pipeline(path: Path, modules: list[dict[str, Any]], *, normalize: bool) -> None:
    """Write sentence-transformers' ``modules.json`` (``modules`` plus a Normalize step if asked) and its config."""
    if normalize:
        idx = len(modules)
        (path / f"{idx}_Normalize").mkdir()
        modules = [*modules, {"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                              "type": "sentence_transformers.models.Normalize"}]
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    (path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))
