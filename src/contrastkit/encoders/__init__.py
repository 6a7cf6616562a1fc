"""Encoders: backbone + pooling + head; fast encode; save/load."""

from .encoder import Encoder, autocast, bf16_supported
from .pooling import POOLINGS

__all__ = ["Encoder", "POOLINGS", "autocast", "bf16_supported"]
