"""HTTP service: OpenAI client compatibility, similarity, search, auth, limits, micro-batching."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from contrastkit.encoders import Encoder
from contrastkit.search import Store
from contrastkit.serve import create_app, encoder_fn

from conftest import make_sentences, serving

KEY = "sekret"


@pytest.fixture(scope="module")
def encoder(tiny_bert: Path) -> Encoder:
    import torch

    torch.set_num_threads(1)
    return Encoder.from_pretrained(str(tiny_bert))


@pytest.fixture(scope="module")
def server(encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    fns = encoder_fn(encoder)
    store = Store.create(tmp_path_factory.mktemp("srv") / "store", encoder.dim, "exact", encoder=fns.encode)
    docs = make_sentences(40, seed=3)
    store.add(docs, ids=[f"doc{i}" for i in range(40)], metadata=[{"half": i % 2} for i in range(40)])
    app = create_app(fns, model_name="tiny", dim=encoder.dim, store=store, api_key=KEY, max_batch=16,
                     max_text_chars=200, max_request_tokens=400, max_body_bytes=1 << 20, max_wait_ms=30)
    with serving(app) as url:
        yield {"url": url, "app": app, "docs": docs, "encoder": encoder}
    store.close()


def _post(server: dict[str, Any], path: str, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", {"Authorization": f"Bearer {KEY}"})
    return httpx.post(server["url"] + path, headers=headers, timeout=30, **kw)


def test_openai_client_matches_encoder(server: dict[str, Any]) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server["url"] + "/v1", api_key=KEY)
    texts = make_sentences(5, seed=1)
    want = server["encoder"].encode(texts)
    res = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in res.data])
    assert [d.index for d in res.data] == list(range(5)) and res.model == "tiny"
    assert np.allclose(got, want, atol=1e-5)
    assert res.usage.prompt_tokens == res.usage.total_tokens == sum(
        len(x) for x in server["encoder"].tokenizer(texts)["input_ids"])
    one = client.embeddings.create(model="tiny", input=texts[0], encoding_format="float")
    assert np.allclose(one.data[0].embedding, want[0], atol=1e-5)
    short = client.embeddings.create(model="tiny", input=texts[:2], dimensions=8, encoding_format="float")
    vec = np.array(short.data[0].embedding)
    assert vec.shape == (8,) and np.isclose(np.linalg.norm(vec), 1.0, atol=1e-5)


def test_base64_format_raw(server: dict[str, Any]) -> None:
    r = _post(server, "/v1/embeddings", json={"input": ["a man plays"], "encoding_format": "base64"})
    assert r.status_code == 200
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, server["encoder"].encode(["a man plays"])[0], atol=1e-5)


def test_similarity_and_search(server: dict[str, Any]) -> None:
    docs = server["docs"]
    r = _post(server, "/v1/similarity", json={"pairs": [[docs[0], docs[0]], [docs[0], docs[1]]]})
    assert r.status_code == 200
    emb = server["encoder"].encode([docs[0], docs[1]])
    cos = float(emb[0] @ emb[1] / np.linalg.norm(emb[0]) / np.linalg.norm(emb[1]))
    assert np.allclose(r.json()["scores"], [1.0, cos], atol=1e-5)
    r2 = _post(server, "/v1/similarity", json={"texts1": [docs[0]], "texts2": [docs[1]]})
    assert np.isclose(r2.json()["scores"][0], cos, atol=1e-5)
    # the tiny random BERT maps all texts to nearly one direction, so compare with the store itself
    store = server["app"].state.store
    r = _post(server, "/v1/search", json={"query": [docs[3], docs[6]], "k": 3})
    assert r.status_code == 200
    data = r.json()["data"]
    want = store.search(server["encoder"].encode([docs[3], docs[6]]), 3)
    for row, ref in zip(data, want):
        assert np.allclose([h["score"] for h in row["hits"]], [h.score for h in ref], atol=1e-5)
        assert row["hits"][0]["score"] > 0.999
        assert all(h["text"] == docs[int(h["id"][3:])] for h in row["hits"])
    r = _post(server, "/v1/search", json={"query": docs[3], "k": 5, "where": {"half": 0}})
    hits = r.json()["data"][0]["hits"]
    assert len(hits) == 5 and all(h["metadata"]["half"] == 0 and int(h["id"][3:]) % 2 == 0 for h in hits)


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/embeddings", {"input": []}, 400, "empty"),
    ("/v1/embeddings", {"input": ""}, 400, "empty"),
    ("/v1/embeddings", {"input": [[1, 2, 3]]}, 400, "token-id"),
    ("/v1/embeddings", {"input": [1, 2, 3]}, 400, "token-id"),
    ("/v1/embeddings", {"input": ["ok", 5]}, 400, "input"),
    ("/v1/embeddings", {"input": 5}, 400, "input"),
    ("/v1/embeddings", {}, 400, "input"),
    ("/v1/embeddings", {"input": ["a"] * 17}, 413, "at most 16"),
    ("/v1/embeddings", {"input": ["a" * 201]}, 413, "limit is 200"),
    ("/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
    ("/v1/embeddings", {"input": "a", "dimensions": 1000}, 400, "dimensions"),
    ("/v1/similarity", {"texts1": ["a"], "texts2": []}, 400, "equally long"),
    ("/v1/similarity", {"pairs": [["a"]]}, 400, "pairs"),
    ("/v1/search", {"query": "a", "k": 0}, 400, "k"),
    ("/v1/search", {"query": "a", "where": {"x": [1]}}, 400, "where"),
])
def test_bad_requests_get_clear_4xx(server: dict[str, Any], path: str, body: Any, status: int, words: str) -> None:
    r = _post(server, path, json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_invalid_json_auth_and_body_limit(server: dict[str, Any]) -> None:
    r = _post(server, "/v1/embeddings", content=b"{not json", headers={"Authorization": f"Bearer {KEY}",
                                                                         "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    assert _post(server, "/v1/embeddings", json={"input": "a"}, headers={}).status_code == 401
    bad = _post(server, "/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
    big = _post(server, "/v1/embeddings", content=b"x" * 30_000_000,
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert big.status_code == 413
    h = httpx.get(server["url"] + "/healthz").json()
    assert h["status"] == "ok" and h["store"] == 40 and h["dim"] == server["encoder"].dim
    schema = httpx.get(server["url"] + "/openapi.json").json()
    assert {"/v1/embeddings", "/v1/similarity", "/v1/search", "/healthz"} <= set(schema["paths"])
    for path in ("/v1/embeddings", "/v1/similarity", "/v1/search"):  # bodies are read by hand, after the key check
        op = schema["paths"][path]["post"]
        assert "properties" in op["requestBody"]["content"]["application/json"]["schema"]
        assert op["security"] == [{"HTTPBearer": []}]


def test_concurrent_requests_are_batched_and_routed(server: dict[str, Any]) -> None:
    stats = server["app"].state.batcher.stats
    calls0, reqs0 = stats.encode_calls, stats.requests
    n = 16
    texts = [make_sentences(1 + i % 4, seed=100 + i) for i in range(n)]
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = _post(server, "/v1/embeddings", json={"input": texts[i], "encoding_format": "float"})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    enc = server["encoder"]
    for i, r in enumerate(results):
        assert r.status_code == 200
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert np.allclose(got, enc.encode(texts[i]), atol=1e-5), i
    assert stats.requests - reqs0 == n
    assert stats.encode_calls - calls0 < n  # requests were merged


def test_search_without_store_is_4xx(encoder: Encoder) -> None:
    app = create_app(encoder_fn(encoder), model_name="tiny", dim=encoder.dim)
    with TestClient(app) as client:
        r = client.post("/v1/search", json={"query": "a man"})
        assert r.status_code == 400 and "no store" in r.json()["error"]["message"]
        assert client.post("/v1/embeddings", json={"input": "a man"}).status_code == 200  # no key needed
