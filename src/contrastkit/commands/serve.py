"""``contrastkit serve``: run the HTTP service (contrastkit.serve) with uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _url(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(config: Any) -> Any:
    """A uvicorn server that prints ``listening on http://HOST:PORT`` once its socket accepts requests."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn.Server plus the ready line (the real port, also for ``--port 0``)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            """Start as uvicorn does, then announce where."""
            await super().startup(sockets)
            if self.started and not self.should_exit:
                for srv in self.servers:
                    for sock in srv.sockets:
                        print(f"listening on {_url(sock)}", flush=True)  # type: ignore[arg-type]

    return Server(config)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from contrastkit.encoders import Encoder
    from contrastkit.search import Store
    from contrastkit.serve import create_app, encoder_fn

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    enc = Encoder.from_pretrained(args.model)
    fns = encoder_fn(enc, batch_size=args.encode_batch_size)
    store = None
    if args.store:
        store = Store.open(args.store, encoder=fns.encode)
        from contrastkit.search.store import model_fingerprint

        store.check_model(args.model, model_fingerprint(enc), force=args.force)  # another model: refused
    api_key = args.api_key or os.environ.get("CONTRASTKIT_API_KEY") or None
    rerank_fn = None
    if args.reranker:
        from contrastkit.rerank import load_reranker

        reranker = load_reranker(args.reranker)

        def rerank_fn(query: str, documents: list[str]) -> Any:
            return reranker.predict([(query, d) for d in documents], batch_size=args.encode_batch_size)
    generate_fn = None
    if args.generator:
        from contrastkit.lm import load_causal_lm
        from contrastkit.serve import generator_fn

        lm, lm_tok = load_causal_lm(args.generator)
        generate_fn = generator_fn(lm, lm_tok)
    try:
        app = create_app(fns, model_name=args.model_name or args.model, model_aliases=[args.model], dim=enc.dim,
                         store=store, api_key=api_key, max_batch=args.max_batch, max_text_chars=args.max_text_chars,
                         max_request_tokens=args.max_request_tokens, max_body_bytes=args.max_body_bytes,
                         max_wait_ms=args.max_wait_ms, reranker=rerank_fn, reranker_name=args.reranker,
                         generator=generate_fn, generator_name=args.generator,
                         max_completion_tokens=args.max_completion_tokens)
        _server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)).run()
    finally:
        if store is not None:
            store.close()
    return 0


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser("serve", help="serve embeddings / similarity / search over HTTP (OpenAI-compatible)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Prints 'listening on http://HOST:PORT' when it accepts requests.")
    p.add_argument("--model", required=True, help="model dir, hub name or alias")
    p.add_argument("--model-name", help="name reported in responses; requests may name it or --model "
                                        "(None: the --model value)")
    p.add_argument("--store", help="store directory for /v1/search (see 'contrastkit index build')")
    p.add_argument("--reranker", help="serve POST /v1/rerank with this cross-encoder dir (contrastkit rerank train), "
                                      "or llm:NAME for a causal LM's yes/no relevance (e.g. llm:smollm2-135m)")
    p.add_argument("--generator", help="serve POST /v1/completions with this causal LM (dir, .gguf or alias such "
                                       "as smollm2-135m); the decoding strategy is the request's 'strategy' field")
    p.add_argument("--max-completion-tokens", type=_positive_int, default=256,
                   help="most new tokens per prompt a /v1/completions request may ask for (max_tokens)")
    p.add_argument("--force", action="store_true",
                   help="serve --store even when it was built by another model (default: refuse)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set $CONTRASTKIT_API_KEY)")
    p.add_argument("--max-batch", type=_positive_int, default=256, help="most texts per request and per encode call")
    p.add_argument("--max-text-chars", type=_positive_int, default=20_000, help="longest text accepted, in characters")
    p.add_argument("--max-request-tokens", type=_positive_int, default=32_768,
                   help="most tokens per request (after truncation to the model's max length)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=2 << 20,
                   help="largest request body in bytes, also for chunked bodies (as text-embeddings-inference's 2 MB payload limit)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--encode-batch-size", type=_positive_int, default=64, help="model forward batch size")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch threads for encoding (None: torch's own choice, one per core; on a machine "
                        "shared with other busy processes 1 can be much faster)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    p.set_defaults(func=_cmd_serve)
