"""``contrastkit serve``: run the HTTP service (contrastkit.serve) with uvicorn."""

from __future__ import annotations

import argparse
import os


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from contrastkit.encoders import Encoder
    from contrastkit.search import Store
    from contrastkit.serve import create_app, encoder_fn

    enc = Encoder.from_pretrained(args.model)
    encode = encoder_fn(enc, batch_size=args.encode_batch_size)
    store = None
    if args.store:
        store = Store.open(args.store, encoder=lambda texts: encode(texts)[0])
        from contrastkit.search.store import model_fingerprint

        store.check_model(args.model, model_fingerprint(enc), force=args.force)  # another model: refused
    api_key = args.api_key or os.environ.get("CONTRASTKIT_API_KEY") or None
    app = create_app(encode, model_name=args.model_name or args.model, dim=enc.dim, store=store, api_key=api_key,
                     max_batch=args.max_batch, max_text_chars=args.max_text_chars, max_wait_ms=args.max_wait_ms)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if store is not None:
            store.close()
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser("serve", help="serve embeddings / similarity / search over HTTP (OpenAI-compatible)")
    p.add_argument("--model", required=True, help="model dir, hub name or alias")
    p.add_argument("--model-name", help="name reported in responses (default: --model)")
    p.add_argument("--store", help="store directory for /v1/search (see 'contrastkit index build')")
    p.add_argument("--force", action="store_true",
                   help="serve --store even when it was built by another model (default: refuse)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set $CONTRASTKIT_API_KEY)")
    p.add_argument("--max-batch", type=int, default=256, help="most texts per request and per encode call")
    p.add_argument("--max-text-chars", type=int, default=20_000, help="longest text accepted, in characters")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--encode-batch-size", type=int, default=64, help="model forward batch size")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_cmd_serve)
