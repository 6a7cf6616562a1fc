"""Encoding large corpora: streaming, sharded, resumable, split over processes and machines."""

from .sharded import ShardedEncodeResult, encode_sharded, input_files, load_shards, run_sharded

__all__ = ["ShardedEncodeResult", "encode_sharded", "input_files", "load_shards", "run_sharded"]
