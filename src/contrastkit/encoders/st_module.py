"""Placeholder module named in ``modules.json`` for poolers sentence-transformers cannot express.

``first_last_avg`` and ``prompt`` pooling have no sentence-transformers equivalent. Rather than
let ``SentenceTransformer(path)`` fall back to mean pooling and silently give other embeddings,
such model directories name this module, whose loading fails with a clear message.
"""

from __future__ import annotations

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
