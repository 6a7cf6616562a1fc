"""``contrastkit encode``: embed a text file into one .npy, or stream any corpus into resumable shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _encode_single(args: argparse.Namespace) -> int:
    """The small case: one input file, one ``.npy`` matrix (texts held in memory)."""

    from ..data import iter_examples
    from ..encoders import Encoder
    from ..fsutil import atomic_save_npy

    texts = [ex.texts[0] for ex in iter_examples(args.input, format="text")]
    enc = Encoder.from_pretrained(args.model)
    emb = enc.encode(texts, batch_size=args.batch_size, normalize=args.normalize or None,
                     precision=args.precision, show_progress=args.progress)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out, emb.astype(args.dtype))
    print(f"wrote {len(texts)} embeddings of dim {emb.shape[1]} to {out}")
    return 0


def _cmd_encode(args: argparse.Namespace) -> int:
    import os

    from ..errors import ConfigError

    if args.backend:  # read by Encoder.from_pretrained here and in worker processes
        os.environ["CONTRASTKIT_BACKEND"] = args.backend

    sharded = args.resume or args.workers > 1 or args.rank is not None or args.world_size is not None \
        or args.shard_size is not None or args.engine != "local"
    if str(args.output).endswith(".npy"):
        if sharded:
            raise ConfigError(f"--output {args.output} names one .npy file; --shard-size, --resume, --workers, "
                              "--engine, --rank and --world-size need an output directory")
        if Path(args.input).is_dir():
            raise ConfigError(f"--input {args.input} is a directory; give an output directory to encode it in shards")
        return _encode_single(args)
    common = dict(shard_size=args.shard_size or 100_000, batch_size=args.batch_size,
                  normalize=args.normalize or None, precision=args.precision, dtype=args.dtype,
                  text_field=args.text_field, resume=args.resume, show_progress=args.progress)
    if args.engine == "ray":
        if args.rank is not None or args.world_size is not None:
            raise ConfigError("--engine ray spreads the shards over a Ray cluster (--ray-address); "
                              "--rank/--world-size belong to the local engine")
        from ..encoding.ray_engine import encode_ray

        res = encode_ray(args.model, args.input, args.output, workers=args.workers, address=args.ray_address,
                         object_store_mb=args.ray_object_store_mb, **common)
    else:
        from ..encoding import run_sharded

        res = run_sharded(args.model, args.input, args.output, workers=args.workers, rank=args.rank,
                          world_size=args.world_size, **common)
    state = "complete" if res.complete else "incomplete (other ranks' shards missing)"
    print(f"encoded {res.rows_encoded} texts into {res.shards_written} shard(s), kept {res.shards_skipped}; "
          f"{res.total_rows} texts in {res.num_shards} shard(s); output {state}: {res.output}")
    print(json.dumps({"shards_written": res.shards_written, "shards_skipped": res.shards_skipped,
                      "rows_encoded": res.rows_encoded, "complete": res.complete, "seconds": res.seconds}))
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``encode`` command."""
    c = sub.add_parser("encode", help="embed texts: one .npy file, or resumable shards for corpora of any size",
                       description="With --output X.npy: one input file into one matrix. With an output "
                                   "directory: stream the input (a file or a directory of text/JSONL/CSV/TSV "
                                   "files) into OUT/shard-00000.npy, ... plus row locations and manifest.json.")
    c.add_argument("--model", required=True, help="model dir (transformer or static), hub name or alias")
    c.add_argument("--input", required=True, help="text file (one text per line), JSONL/CSV/TSV, or a directory")
    c.add_argument("--output", required=True, help="X.npy for one matrix, else a directory of shards")
    c.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    c.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    c.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                   help="auto (default): bf16 where the hardware runs it natively (STS-B within 0.1 of fp32), else fp32")
    c.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default=None,
                   help="run the model with torch or an exported ONNX file (contrastkit export); "
                        "default: $CONTRASTKIT_BACKEND or torch")
    c.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="dtype of the stored vectors")
    c.add_argument("--shard-size", type=int, default=None, help="texts per shard (default 100000)")
    c.add_argument("--format", choices=["npy"], default="npy", help="shard file format")
    c.add_argument("--text-field", default="text", help="field/column holding the text in JSONL/CSV/TSV input")
    c.add_argument("--resume", action="store_true", help="keep completed shards (row counts verified)")
    c.add_argument("--workers", type=int, default=1, help="local processes (or Ray actors) sharing the shards")
    c.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: a process pool (default); ray: Ray Data map_batches over --workers actors "
                        "(pip install 'contrastkit[ray]')")
    c.add_argument("--ray-address", default=None,
                   help="with --engine ray: join this Ray cluster (default: start a local Ray for the run)")
    c.add_argument("--ray-object-store-mb", type=int, default=256,
                   help="with --engine ray and no --ray-address: the local Ray's object store, MiB (default 256)")
    c.add_argument("--rank", type=int, default=None, help="this machine's rank (default: $RANK or 0)")
    c.add_argument("--world-size", type=int, default=None, help="number of machines (default: $WORLD_SIZE or 1)")
    c.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    c.set_defaults(func=_cmd_encode)
