"""HTTP service: OpenAI-compatible ``/v1/embeddings``, ``/v1/similarity``, ``/v1/search`` and ``/healthz``.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for invalid
JSON, empty input or unsupported token-id input, 401 for a missing or wrong API key, 413 for
too many inputs (``max_batch``), a text longer than ``max_text_chars`` or an oversized body,
422 for wrong types. Embeddings are the model's own (normalised only if the model says so);
``dimensions`` keeps the first d components and re-normalises them (Matryoshka-style, as
OpenAI's text-embedding-3 models do). ``usage`` counts the model tokenizer's tokens.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from contrastkit.errors import ContrastkitError
from contrastkit.serve.batcher import EncodeWithCounts, MicroBatcher

__all__ = ["ApiError", "create_app", "encoder_fn"]


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a clear message."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


class EmbeddingRequest(BaseModel):
    """OpenAI embeddings request."""

    input: str | list[str] | list[int] | list[list[int]] = Field(description="text or list of texts")
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class SimilarityRequest(BaseModel):
    """Cosine similarity of text pairs: ``pairs`` or two equally long lists ``texts1`` / ``texts2``."""

    pairs: list[tuple[str, str]] | None = None
    texts1: list[str] | None = None
    texts2: list[str] | None = None
    model: str | None = None


class SearchRequest(BaseModel):
    """Search the store with query text(s), ``k`` hits each, optional metadata equality filter ``where``."""

    query: str | list[str]
    k: int = Field(default=10, ge=1, le=1000)
    where: dict[str, str | int | float | bool | None] | None = None


def encoder_fn(encoder: Any, *, batch_size: int = 64) -> EncodeWithCounts:
    """Adapt a contrastkit Encoder to the batcher: embeddings plus per-text token counts."""

    def fn(texts: list[str]) -> tuple[np.ndarray, list[int]]:
        emb = np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)
        ids = encoder.tokenizer(encoder.prepare(texts), truncation=True, max_length=encoder.max_length)["input_ids"]
        return emb, [len(x) for x in ids]

    return fn


def create_app(encode: EncodeWithCounts, *, model_name: str, dim: int, store: Any = None,
               api_key: str | None = None, max_batch: int = 256, max_text_chars: int = 20_000,
               max_wait_ms: float = 5.0) -> FastAPI:
    """The FastAPI app; ``encode(texts) -> (embeddings, token counts)`` is called from one worker thread."""
    if store is not None and store.dim != dim:
        raise ContrastkitError(f"store dim {store.dim} != model dim {dim}: the store was built with another model")
    batcher = MicroBatcher(encode, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    max_body = max_batch * max_text_chars * 6 + (1 << 20)  # UTF-8 and JSON escaping headroom

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="contrastkit", version="1", lifespan=lifespan,
                  description="Text embeddings, similarity and search (OpenAI-compatible /v1/embeddings).")
    app.state.batcher = batcher
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.message, err.param, err.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = errors[0].get("ctx", {}).get("error", "")
            return _error(400, f"request body is not valid JSON ({ctx})".replace(" ()", ""))
        parts = []
        for e in errors[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {e.get('msg')}")
        return _error(422, "invalid request: " + "; ".join(parts), errors[0].get("loc", [None])[-1] if errors else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(ContrastkitError)
    async def _ck(_: Request, err: ContrastkitError) -> JSONResponse:
        return _error(400, str(err))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(err).__name__}: {err}", kind="server_error")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return _error(413, f"request body of {int(length):,} bytes exceeds the limit of {max_body:,} bytes")
        return await call_next(request)

    async def auth(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != api_key:
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           kind="authentication_error")

    def check_texts(texts: list[str], param: str) -> None:
        if not texts:
            raise ApiError(400, f"'{param}' is empty: send at least one text", param)
        if len(texts) > max_batch:
            raise ApiError(413, f"'{param}' holds {len(texts)} texts; this server accepts at most {max_batch} "
                                f"per request (--max-batch)", param)
        for i, t in enumerate(texts):
            if not t.strip():
                raise ApiError(400, f"'{param}'[{i}] is an empty string", param)
            if len(t) > max_text_chars:
                raise ApiError(413, f"'{param}'[{i}] has {len(t):,} characters; the limit is {max_text_chars:,} "
                                    f"(--max-text-chars)", param)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, the model, the store size and batching counters."""
        s = batcher.stats
        return {"status": "ok", "model": model_name, "dim": dim,
                "store": None if store is None else await run_in_threadpool(len, store),
                "requests": s.requests, "encode_calls": s.encode_calls, "texts": s.texts}

    @app.post("/v1/embeddings", dependencies=[Depends(auth)])
    async def embeddings(req: EmbeddingRequest) -> dict[str, Any]:
        """OpenAI-compatible embeddings."""
        inp = req.input
        texts = [inp] if isinstance(inp, str) else inp
        if texts and not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "token-id input (arrays of integers) is not supported by this server: send the "
                                "text itself as a string or a list of strings", "input")
        check_texts(texts, "input")  # type: ignore[arg-type]
        if req.dimensions is not None and req.dimensions > dim:
            raise ApiError(400, f"dimensions={req.dimensions} exceeds the model's {dim}", "dimensions")
        emb, counts = await batcher.encode(texts)  # type: ignore[arg-type]
        if req.dimensions is not None and req.dimensions < dim:
            emb = emb[:, :req.dimensions]
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        data = []
        for i, row in enumerate(emb):
            value: Any = (base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
                          if req.encoding_format == "base64" else row.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = int(sum(counts))
        return {"object": "list", "data": data, "model": req.model or model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/similarity", dependencies=[Depends(auth)])
    async def similarity(req: SimilarityRequest) -> dict[str, Any]:
        """Cosine similarity of each pair."""
        if req.pairs is not None:
            if req.texts1 is not None or req.texts2 is not None:
                raise ApiError(400, "send either 'pairs' or 'texts1' + 'texts2', not both")
            a, b = [p[0] for p in req.pairs], [p[1] for p in req.pairs]
        elif req.texts1 is not None and req.texts2 is not None:
            if len(req.texts1) != len(req.texts2):
                raise ApiError(400, f"'texts1' has {len(req.texts1)} texts and 'texts2' {len(req.texts2)}; "
                                    f"they must be equally long", "texts2")
            a, b = req.texts1, req.texts2
        else:
            raise ApiError(400, "send 'pairs': [[text, text], ...] or 'texts1' and 'texts2' (equally long lists)")
        check_texts(a, "texts1" if req.pairs is None else "pairs")
        check_texts(b, "texts2" if req.pairs is None else "pairs")
        unique = list(dict.fromkeys([*a, *b]))
        if len(unique) > max_batch:
            raise ApiError(413, f"{len(unique)} distinct texts; at most {max_batch} per request (--max-batch)")
        emb, counts = await batcher.encode(unique)
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        pos = {t: i for i, t in enumerate(unique)}
        scores = [float(emb[pos[x]] @ emb[pos[y]]) for x, y in zip(a, b)]
        tokens = int(sum(counts))
        return {"object": "list", "scores": scores, "model": req.model or model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/search", dependencies=[Depends(auth)])
    async def search(req: SearchRequest) -> dict[str, Any]:
        """Top-k documents of the store for each query text."""
        if store is None:
            raise ApiError(400, "this server has no store: start it with 'contrastkit serve --store DIR'")
        queries = [req.query] if isinstance(req.query, str) else req.query
        check_texts(queries, "query")
        emb, _ = await batcher.encode(queries)
        hits = await run_in_threadpool(store.search, emb, req.k, req.where)
        data = [{"index": i, "hits": [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}
                                      for h in row]} for i, row in enumerate(hits)]
        return {"object": "list", "data": data, "model": model_name}

    return app
