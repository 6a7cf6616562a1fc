"""HTTP service: OpenAI-compatible ``/v1/embeddings``, ``/v1/similarity``, ``/v1/search``, ``/v1/rerank``,
``/v1/completions`` (a decoding ``strategy`` as an extra field), ``/healthz``.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: 400 for a body that
is not valid JSON, has a wrong type (strict: ``true`` is not a number), an unknown field, empty
input, token-id input or a text the tokenizer rejects; 401 for a missing or wrong API key (checked
before the body is read); 404 for a ``model`` this server does not serve; 413 for too many texts
(``max_batch``), a text longer than ``max_text_chars``, more than ``max_request_tokens`` tokens or
a body over ``max_body_bytes`` (counted while reading, chunked bodies included); 500 without
internals (the traceback goes to the server log). Bodies are parsed and texts tokenized in worker
threads, so ``/healthz`` answers while requests are parsed or encoded. A request whose client
disconnects is dropped from the batcher's queue. Embeddings are the model's own (normalised only if
the model says so); ``dimensions`` keeps the first d components and re-normalises them
(Matryoshka-style, as OpenAI's text-embedding-3 models do). ``usage`` counts the model tokenizer's
tokens (after truncation to the model's ``max_length``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio
import numpy as np
import pydantic_core
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StringConstraints,
    Tag,
    ValidationError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from contrastkit.errors import ContrastkitError
from contrastkit.serve.batcher import MicroBatcher

__all__ = ["ApiError", "EncodeFns", "GenerateFn", "create_app", "encoder_fn", "generator_fn"]

_log = logging.getLogger("contrastkit.serve")

MAX_ITEMS = 65_536  # structural cap on any list in a request body (the configured limits are lower)
MAX_TOKEN_IDS = 8_192  # longest token-id list parsed (token ids are refused, but cheaply)
MAX_WHERE_FIELDS = 64
_INT64 = 2**63


class ApiError(Exception):
    """An error answered to the client with an HTTP status and a clear message."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers, self.code = headers, code


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None, code: str | int | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": status if code is None else code}},
                        status_code=status, headers=headers)


@dataclass(frozen=True)
class EncodeFns:
    """The model as the service uses it: ``encode(texts) -> (n, dim)`` and ``count_tokens(texts) -> [int]``.

    ``count_tokens`` runs once per request before it joins a batch: it must raise on input the
    model cannot take (so that request alone gets a 400) and returns the tokens each text costs.
    """

    encode: Callable[[list[str]], np.ndarray]
    count_tokens: Callable[[list[str]], list[int]]


def encoder_fn(encoder: Any, *, batch_size: int = 64) -> EncodeFns:
    """Adapt a contrastkit Encoder to the service: batched ``encode`` plus the tokenizer's per-text counts."""

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

    def count_tokens(texts: list[str]) -> list[int]:
        ids = encoder.tokenizer(encoder.prepare(texts), truncation=True, max_length=encoder.max_length)["input_ids"]
        return [len(x) for x in ids]

    return EncodeFns(encode, count_tokens)


GenerateFn = Callable[[list[str], str, dict[str, Any]], tuple[list[Any], list[int]]]
"""``generate(prompts, strategy, params) -> (completions, prompt token counts)`` for ``/v1/completions``; each
completion has ``text``, ``token_ids`` and ``finish_reason`` (:class:`contrastkit.generation.Completion`)."""


def generator_fn(model: Any, tokenizer: Any, *, batch_size: int = 16) -> GenerateFn:
    """Adapt a causal LM (:func:`contrastkit.lm.load_causal_lm`) to ``/v1/completions``: one generation at a
    time (requests queue on a lock), ``contrastkit.generation.generate`` with the request's strategy."""
    import threading

    from contrastkit.generation import generate

    lock = threading.Lock()

    def run(prompts: list[str], strategy: str, params: dict[str, Any]) -> tuple[list[Any], list[int]]:
        counts = [len(x) for x in tokenizer(prompts)["input_ids"]]
        with lock:
            return generate(model, tokenizer, prompts, strategy=strategy, batch_size=batch_size, **params), counts

    return run


# -- request bodies (strict: no bool-as-int, no str-as-number, unknown fields refused) ----------------
_STRICT = ConfigDict(strict=True, extra="forbid")
_TAGS = {"text", "texts", "ids", "id_lists", "str", "bool", "int", "float", "null"}


def _input_kind(value: Any) -> str:
    """Which form an ``input`` takes, from its first element (so a bad list is validated once, not four times)."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list) and value:
        if isinstance(value[0], int) and not isinstance(value[0], bool):
            return "ids"
        if isinstance(value[0], list):
            return "id_lists"
    return "texts"


def _value_kind(value: Any) -> str:
    """The JSON type of a ``where`` value, so a huge integer is checked as an integer (not turned into a float)."""
    if value is None:
        return "null"
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if isinstance(value, typ):
            return name
    return "str"


Texts = Annotated[list[str], Field(max_length=MAX_ITEMS)]
TokenIds = Annotated[list[int], Field(max_length=MAX_TOKEN_IDS)]
EmbeddingInput = Annotated[Annotated[str, Tag("text")] | Annotated[Texts, Tag("texts")] | Annotated[TokenIds, Tag("ids")] | Annotated[Annotated[list[TokenIds], Field(max_length=MAX_ITEMS)], Tag("id_lists")], Discriminator(_input_kind)]
WhereValue = Annotated[Annotated[None, Tag("null")] | Annotated[bool, Tag("bool")] | Annotated[int, Field(ge=-_INT64, lt=_INT64), Tag("int")] | Annotated[float, Field(allow_inf_nan=False), Tag("float")] | Annotated[str, Field(max_length=10000), Tag("str")], Discriminator(_value_kind)]
ModelName = Annotated[str, StringConstraints(max_length=256)]


class EmbeddingRequest(BaseModel):
    """OpenAI embeddings request."""

    model_config = _STRICT
    input: EmbeddingInput = Field(description="text or list of texts")
    model: ModelName | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: Annotated[str, StringConstraints(max_length=256)] | None = None


class SimilarityRequest(BaseModel):
    """Cosine similarity of text pairs: ``pairs`` or two equally long lists ``texts1`` / ``texts2``."""

    model_config = _STRICT
    pairs: Annotated[list[Annotated[tuple[str, str], Strict(False)]], Field(max_length=MAX_ITEMS)] | None = None
    texts1: Texts | None = None
    texts2: Texts | None = None
    model: ModelName | None = None


class SearchRequest(BaseModel):
    """Search the store with query text(s), ``k`` hits each, optional metadata equality filter ``where``."""

    model_config = _STRICT
    query: str | Texts
    k: int = Field(default=10, ge=1, le=1000)
    where: Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], WhereValue],
                     Field(max_length=MAX_WHERE_FIELDS)] | None = None
    model: ModelName | None = None


class RerankRequest(BaseModel):
    """Rerank ``documents`` for ``query`` (Cohere/Jina rerank shape); ``top_n`` best, optionally with their text."""

    model_config = _STRICT
    query: str
    documents: Texts
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    model: ModelName | None = None


COMPLETION_STRATEGIES = ("greedy", "sample", "contrastive_search", "contrastive_decoding", "dola")
"""Strategies ``/v1/completions`` serves (contrastive decoding with the expert's early-exit ``amateur_layer``)."""
_DECODING_FIELDS = ("top_k", "typical_p", "penalty_alpha", "repetition_penalty", "alpha", "beta",
                    "amateur_temperature", "amateur_layer", "dola_layers", "do_sample")


class CompletionRequest(BaseModel):
    """OpenAI completions request, plus contrastkit's ``strategy`` and its decoder parameters (sent by the
    ``openai`` client as ``extra_body``). Without ``strategy``: sampling at ``temperature`` / ``top_p``
    (OpenAI's default), greedy at ``temperature`` 0."""

    model_config = _STRICT
    model: ModelName | None = None
    prompt: Annotated[str, StringConstraints(max_length=1_000_000)] | Texts
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: Annotated[str, StringConstraints(min_length=1)] | Annotated[
        list[Annotated[str, StringConstraints(min_length=1)]], Field(max_length=4)] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stream: bool = False
    echo: bool = False
    logprobs: int | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    strategy: Literal[COMPLETION_STRATEGIES] | None = None  # type: ignore[valid-type]
    top_k: int | None = Field(default=None, ge=1, le=1000)
    typical_p: float | None = Field(default=None, gt=0.0, le=1.0)
    penalty_alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    alpha: float | None = Field(default=None, gt=0.0, le=1.0)
    beta: float | None = Field(default=None, ge=0.0)
    amateur_temperature: float | None = Field(default=None, gt=0.0)
    amateur_layer: int | None = Field(default=None, ge=0)
    dola_layers: Literal["low", "high"] | Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=64)] | None \
        = None
    do_sample: bool | None = None


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: bytes) -> M:
    """Parse JSON (pydantic-core's parser: no NaN/Infinity) and validate it strictly against ``model``.

    Parsing to Python first and validating in Python mode is about 3x faster than ``model_validate_json``
    on a body of millions of numbers (measured: 6 MB of token ids, 0.16 s instead of 0.5 s).
    """
    return model.model_validate(pydantic_core.from_json(body, allow_inf_nan=False))


def _json_error_message(detail: str) -> str:
    """The 400 message for a body that is not JSON."""
    if "hex escape" in detail or "surrogate" in detail:
        detail += "; a \\uXXXX escape must be a valid Unicode character (no lone surrogate)"
    return f"request body is not valid JSON ({detail})"


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    """One readable line for a pydantic error (at most 5 problems), and the first offending parameter."""
    errors = err.errors(include_url=False, include_input=False, include_context=True)
    parts, first = [], None
    for e in errors[:5]:
        loc = [str(x) for x in e.get("loc", ()) if x not in _TAGS]
        first = first or (loc[0] if loc else None)
        msg = e.get("msg", "invalid")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more, first


def create_app(fns: EncodeFns, *, model_name: str, dim: int, store: Any = None, api_key: str | None = None,
               model_aliases: Sequence[str] = (), max_batch: int = 256, max_text_chars: int = 20_000,
               max_request_tokens: int = 32_768, max_body_bytes: int = 2 << 20, max_wait_ms: float = 5.0,
               parse_threads: int = 4, reranker: Callable[[str, list[str]], Sequence[float]] | None = None,
               reranker_name: str | None = None, generator: GenerateFn | None = None,
               generator_name: str | None = None, max_completion_tokens: int = 256) -> FastAPI:
    """The FastAPI app; ``fns.encode`` is called from one worker thread with merged batches.

    ``model_aliases``: further names a request's ``model`` may use. ``parse_threads``: most
    bodies parsed or tokenized at once (apart from the threads that answer ``/healthz``).
    ``reranker(query, documents) -> scores`` serves ``POST /v1/rerank`` (its ``model`` is ``reranker_name``).
    ``generator`` (:func:`generator_fn`) serves ``POST /v1/completions`` (its ``model`` is ``generator_name``),
    at most ``max_completion_tokens`` new tokens per prompt.
    """
    if store is not None and store.dim != dim:
        raise ContrastkitError(f"store dim {store.dim} != model dim {dim}: the store was built with another model")
    for name, value in (("max_batch", max_batch), ("max_text_chars", max_text_chars),
                        ("max_completion_tokens", max_completion_tokens),
                        ("max_request_tokens", max_request_tokens), ("max_body_bytes", max_body_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ContrastkitError(f"{name} must be a positive integer, got {value!r}")
    if max_batch > MAX_ITEMS:
        raise ContrastkitError(f"max_batch must be at most {MAX_ITEMS:,}, got {max_batch:,}")
    batcher = MicroBatcher(fns.encode, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    served = {model_name, *model_aliases}
    key = None if api_key is None else api_key.encode("utf-8")
    limiter: list[anyio.CapacityLimiter] = []  # created on the server's event loop

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        limiter.append(anyio.CapacityLimiter(parse_threads))
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="contrastkit", version="1", lifespan=lifespan,
                  description="Text embeddings, similarity and search (OpenAI-compatible /v1/embeddings).")
    app.state.batcher = batcher
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.message, err.param, err.kind, err.headers, err.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(ContrastkitError)
    async def _ck(_: Request, err: ContrastkitError) -> JSONResponse:
        return _error(400, str(err))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> JSONResponse:
        return _error(499, "client closed the request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        _log.error("internal error answering %s %s", request.method, request.url.path, exc_info=err)
        return _error(500, "internal server error (details are in the server log)", kind="server_error")

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter[0] if limiter else None)

    bearer = HTTPBearer(auto_error=False, description="the server's --api-key")

    async def auth(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        """Refuse a missing or wrong key before the body is read (constant-time comparison)."""
        if key is None:
            return
        given = cred.credentials.encode("latin-1") if cred is not None else b""
        if not hmac.compare_digest(given, key):
            has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           kind="authentication_error",
                           headers={"WWW-Authenticate": "Bearer", **({"Connection": "close"} if has_body else {})})

    def too_large(size: str) -> ApiError:
        return ApiError(413, f"request body of {size} bytes exceeds the limit of {max_body_bytes:,} bytes "
                             f"(--max-body-bytes)", headers={"Connection": "close"})

    def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
        async def read(request: Request) -> M:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_body_bytes:
                raise too_large(f"{int(declared):,}")
            chunks, size = [], 0
            async for chunk in request.stream():  # counts chunked bodies too; stops at the limit
                size += len(chunk)
                if size > max_body_bytes:
                    raise too_large(f"more than {max_body_bytes:,}")
                chunks.append(chunk)
            try:
                return await in_thread(_parse, model, b"".join(chunks))
            except ValidationError as err:
                message, param = _validation_message(err)
                raise ApiError(400, message, param) from None
            except ValueError as err:  # not JSON
                raise ApiError(400, _json_error_message(str(err))) from None

        return read

    def body_schema(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema()
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    def check_model(name: str | None) -> None:
        if name is not None and name not in served:
            raise ApiError(404, f"model {name[:80]!r} is not served here; this server serves "
                                f"{', '.join(repr(s) for s in sorted(served))}", "model", code="model_not_found")

    def check_texts(texts: Sequence[str], param: str) -> None:
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

    def count_tokens(texts: list[str], param: str) -> list[int]:
        try:
            counts = fns.count_tokens(texts)
        except Exception:
            for i, t in enumerate(texts):
                try:
                    fns.count_tokens([t])
                except Exception:  # noqa: BLE001
                    raise ApiError(400, f"'{param}'[{i}] cannot be tokenized by the model's tokenizer "
                                        f"(for example a lone surrogate or other invalid Unicode)", param) from None
            raise
        total = int(sum(counts))
        if total > max_request_tokens:
            raise ApiError(413, f"'{param}' holds {total:,} tokens; this server accepts at most "
                                f"{max_request_tokens:,} per request (--max-request-tokens)", param)
        return counts

    async def wait_disconnect(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def encode(request: Request, texts: list[str], param: str) -> tuple[np.ndarray, int]:
        """Embeddings and token count of a request's texts; dropped from the queue if the client goes away."""
        counts = await in_thread(count_tokens, texts, param)
        job = asyncio.ensure_future(batcher.encode(texts))
        gone = asyncio.ensure_future(wait_disconnect(request))
        try:
            await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not job.done():
                job.cancel()  # cancels its queue entry: the batcher skips it
        if job.cancelled():
            raise ClientDisconnect()
        return job.result(), int(sum(counts))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, the model, the store size and batching counters."""
        s = batcher.stats
        return {"status": "ok", "model": model_name, "dim": dim,
                "store": None if store is None else await run_in_threadpool(len, store),
                "requests": s.requests, "encode_calls": s.encode_calls, "texts": s.texts,
                "failed": s.failed, "dropped": s.dropped}

    @app.post("/v1/embeddings", dependencies=[Depends(auth)], openapi_extra=body_schema(EmbeddingRequest))
    async def embeddings(request: Request,
                         req: EmbeddingRequest = Depends(json_body(EmbeddingRequest))) -> dict[str, Any]:
        """OpenAI-compatible embeddings."""
        check_model(req.model)
        inp = req.input
        texts = [inp] if isinstance(inp, str) else inp
        if texts and not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "token-id input (arrays of integers) is not supported by this server: send the "
                                "text itself as a string or a list of strings", "input")
        check_texts(texts, "input")  # type: ignore[arg-type]
        if req.dimensions is not None and req.dimensions > dim:
            raise ApiError(400, f"dimensions={req.dimensions} exceeds the model's {dim}", "dimensions")
        emb, tokens = await encode(request, texts, "input")  # type: ignore[arg-type]
        if req.dimensions is not None and req.dimensions < dim:
            emb = emb[:, :req.dimensions]
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        data = []
        for i, row in enumerate(emb):
            value: Any = (base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
                          if req.encoding_format == "base64" else row.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/similarity", dependencies=[Depends(auth)], openapi_extra=body_schema(SimilarityRequest))
    async def similarity(request: Request,
                         req: SimilarityRequest = Depends(json_body(SimilarityRequest))) -> dict[str, Any]:
        """Cosine similarity of each pair."""
        check_model(req.model)
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
        emb, tokens = await encode(request, unique, "pairs" if req.pairs is not None else "texts1")
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        pos = {t: i for i, t in enumerate(unique)}
        scores = [float(emb[pos[x]] @ emb[pos[y]]) for x, y in zip(a, b)]
        return {"object": "list", "scores": scores, "model": model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/search", dependencies=[Depends(auth)], openapi_extra=body_schema(SearchRequest))
    async def search(request: Request,
                     req: SearchRequest = Depends(json_body(SearchRequest))) -> dict[str, Any]:
        """Top-k documents of the store for each query text."""
        check_model(req.model)
        if store is None:
            raise ApiError(400, "this server has no store: start it with 'contrastkit serve --store DIR'")
        queries = [req.query] if isinstance(req.query, str) else req.query
        check_texts(queries, "query")
        emb, _ = await encode(request, queries, "query")
        hits = await run_in_threadpool(store.search, emb, req.k, req.where)
        data = [{"index": i, "hits": [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}
                                      for h in row]} for i, row in enumerate(hits)]
        return {"object": "list", "data": data, "model": model_name}

    @app.post("/v1/rerank", dependencies=[Depends(auth)], openapi_extra=body_schema(RerankRequest))
    async def rerank(req: RerankRequest = Depends(json_body(RerankRequest))) -> dict[str, Any]:
        """Documents by relevance to the query, best first: ``{results: [{index, relevance_score, document?}]}``."""
        if reranker is None:
            raise ApiError(400, "this server has no reranker: start it with 'contrastkit serve --reranker MODEL'")
        if req.model is not None and req.model != reranker_name:
            raise ApiError(404, f"reranker {req.model[:80]!r} is not served here; this server reranks with "
                                f"{reranker_name!r}", "model", code="model_not_found")
        check_texts([req.query], "query")
        check_texts(req.documents, "documents")
        scores = [float(x) for x in await in_thread(reranker, req.query, list(req.documents))]
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:req.top_n]
        results = [{"index": i, "relevance_score": scores[i],
                    **({"document": {"text": req.documents[i]}} if req.return_documents else {})} for i in order]
        return {"object": "list", "results": results, "model": reranker_name}

    @app.post("/v1/completions", dependencies=[Depends(auth)], openapi_extra=body_schema(CompletionRequest))
    async def completions(req: CompletionRequest = Depends(json_body(CompletionRequest))) -> dict[str, Any]:
        """OpenAI-compatible text completions with a decoding ``strategy`` (greedy, sample, contrastive_search,
        contrastive_decoding, dola) and its parameters as extra fields; a parameter the strategy does not take
        is a 400, never ignored."""
        if generator is None:
            raise ApiError(400, "this server has no generator: start it with 'contrastkit serve --generator MODEL'")
        if req.model is not None and req.model != generator_name:
            raise ApiError(404, f"model {req.model[:80]!r} is not served for completions here; this server "
                                f"generates with {generator_name!r}", "model", code="model_not_found")
        for field, ok, why in (("n", req.n == 1, "n must be 1 (one completion per prompt)"),
                               ("stream", not req.stream, "streaming is not supported; send stream: false"),
                               ("echo", not req.echo, "echo is not supported"),
                               ("logprobs", req.logprobs is None, "logprobs are not supported")):
            if not ok:
                raise ApiError(400, why, field)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        check_texts(prompts, "prompt")
        max_tokens = min(16, max_completion_tokens) if req.max_tokens is None else req.max_tokens  # OpenAI's: 16
        if max_tokens > max_completion_tokens:
            raise ApiError(400, f"max_tokens={max_tokens} exceeds this server's limit of {max_completion_tokens}",
                           "max_tokens")
        strategy = req.strategy
        given = {k: getattr(req, k) for k in ("temperature", "top_p", "seed", *_DECODING_FIELDS)
                 if getattr(req, k) is not None}
        if strategy is None:
            strategy = "greedy" if req.temperature == 0 else "sample"
            if strategy == "greedy":
                given = {k: v for k, v in given.items() if k not in ("temperature", "top_p")}
        from contrastkit.generation import strategy_parameters

        accepted = strategy_parameters(strategy)
        if "seed" not in accepted:  # a deterministic strategy: OpenAI's seed has nothing to seed
            given.pop("seed", None)
        unknown = [k for k in given if k not in accepted]
        if unknown:
            raise ApiError(400, f"strategy {strategy!r} takes no {', '.join(unknown)} (it takes "
                                f"{', '.join(k for k in accepted if k not in ('eos_token_id', 'pad_token_id'))})",
                           unknown[0])
        if strategy == "contrastive_decoding" and "amateur_layer" not in given:
            raise ApiError(400, "strategy 'contrastive_decoding' needs amateur_layer (the expert's early-exit layer "
                                "serves as the amateur)", "amateur_layer")
        if strategy == "sample" and req.temperature == 0:
            raise ApiError(400, "temperature 0 with strategy 'sample': use strategy 'greedy'", "temperature")
        done, counts = await in_thread(generator, prompts, strategy, {"max_new_tokens": max_tokens, **given})
        stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        choices = []
        for i, c in enumerate(done):
            text, reason = c.text, c.finish_reason
            cut = min((text.find(s) for s in stops if s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
            choices.append({"text": text, "index": i, "finish_reason": reason, "logprobs": None})
        prompt_tokens, completion_tokens = int(sum(counts)), int(sum(len(c.token_ids) for c in done))
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": generator_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    return app
