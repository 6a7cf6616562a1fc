"""contrastkit: contrastive learning of text embeddings — train, evaluate, use."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Encoder", "RunConfig", "load_config", "train", "__version__"]


def __getattr__(name: str):  # lazy: `import contrastkit` stays cheap (no torch until needed)
    if name == "Encoder":
        from .encoders import Encoder

        return Encoder
    if name in ("RunConfig", "load_config"):
        from . import config

        return getattr(config, name)
    if name == "train":
        from .run import train

        return train
    raise AttributeError(name)
