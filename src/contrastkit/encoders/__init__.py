"""Encoders: backbone + pooling + head; fast encode; save/load."""

from .encoder import Encoder, autocast, bf16_supported, encode_precision
from .pooling import POOLINGS
from .static import StaticEncoder

__all__ = ["Encoder", "POOLINGS", "autocast", "bf16_supported", "encode_precision", "StaticEncoder"]
