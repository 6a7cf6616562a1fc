"""The service under hostile or broken clients: poison requests, unauthenticated and oversized streamed
bodies, token budgets, strict types, internals kept out of errors, disconnected clients, the ready line."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from contrastkit.encoders import Encoder
from contrastkit.serve import EncodeFns, MicroBatcher, create_app, encoder_fn

from conftest import make_sentences, serving

KEY = "sekret"
AUTH = {"Authorization": f"Bearer {KEY}"}


def fake_vec(text: str) -> np.ndarray:
    """A deterministic 4-d vector per text."""
    h = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return np.frombuffer(h[:16], dtype=np.uint32).astype(np.float32) / 2**32


class FakeModel:
    """Records every encode call; ``BOOM`` breaks encode, ``TOKBAD`` breaks the tokenizer; optional delay."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.started = threading.Event()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed, slowly if asked; raise on a text holding BOOM."""
        self.calls.append(list(texts))
        self.started.set()
        time.sleep(self.delay)
        if any("BOOM" in t for t in texts):
            raise ValueError("secret-internal-detail")
        return np.stack([fake_vec(t) for t in texts])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Words per text; raise on a text holding TOKBAD."""
        if any("TOKBAD" in t for t in texts):
            raise TypeError("tokenizer exploded")
        return [len(t.split()) for t in texts]

    def fns(self) -> EncodeFns:
        """The pair create_app takes."""
        return EncodeFns(self.encode, self.count_tokens)


def _concurrently(jobs: list[Any]) -> list[Any]:
    """Run the callables at once (a barrier releases them together); their results in order."""
    out: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = jobs[i]()
        except Exception as err:  # noqa: BLE001 - reported by the caller's asserts
            out[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.fixture(scope="module")
def encoder(tiny_bert: Path, one_thread: None) -> Encoder:
    return Encoder.from_pretrained(str(tiny_bert))


@pytest.fixture(scope="module")
def real(encoder: Encoder) -> Iterator[dict[str, Any]]:
    """A server of the tiny BERT with small limits."""
    app = create_app(encoder_fn(encoder), model_name="tiny", dim=encoder.dim, api_key=KEY, max_batch=16,
                     max_text_chars=200, max_request_tokens=300, max_body_bytes=1 << 20, max_wait_ms=50)
    with serving(app) as url:
        yield {"url": url, "app": app, "encoder": encoder}


def test_lone_surrogate_fails_only_its_own_request_among_concurrent_clients(real: dict[str, Any]) -> None:
    url, enc = real["url"], real["encoder"]
    texts = [make_sentences(1 + i % 3, seed=500 + i) for i in range(12)]
    poison = b'{"input": ["a man plays", "abc \\ud800 def"], "encoding_format": "float"}'

    def good(i: int) -> Any:
        return lambda: httpx.post(url + "/v1/embeddings", headers=AUTH, timeout=60,
                                  json={"input": texts[i], "encoding_format": "float"})

    def bad() -> httpx.Response:
        return httpx.post(url + "/v1/embeddings", content=poison, timeout=60,
                          headers={**AUTH, "Content-Type": "application/json"})

    for _ in range(3):
        results = _concurrently([good(i) for i in range(12)] + [bad, bad])
        for i, r in enumerate(results[:12]):
            assert isinstance(r, httpx.Response) and r.status_code == 200, r
            got = np.array([d["embedding"] for d in r.json()["data"]])
            assert np.allclose(got, enc.encode(texts[i]), atol=1e-5)
        for r in results[12:]:
            assert r.status_code == 400, r.text
            assert "surrogate" in r.json()["error"]["message"]


def test_encode_failure_is_isolated_to_its_request_in_a_merged_batch() -> None:
    model = FakeModel(delay=0.15)
    app = create_app(model.fns(), model_name="fake", dim=4, max_batch=64, max_wait_ms=100)
    with serving(app) as url:
        def post(texts: list[str]) -> Any:
            return lambda: httpx.post(url + "/v1/embeddings", json={"input": texts}, timeout=60)

        goods = [[f"text {i} a", f"text {i} b"] for i in range(10)]
        results = _concurrently([post(t) for t in goods] + [post(["fine", "BOOM here"]), post(["TOKBAD"])])
        for texts, r in zip(goods, results):
            assert r.status_code == 200, r.text
            assert np.allclose([d["embedding"] for d in r.json()["data"]], [fake_vec(t) for t in texts])
        boom, tokbad = results[10], results[11]
        assert boom.status_code == 500
        assert "secret-internal-detail" not in boom.text and "ValueError" not in boom.text
        assert tokbad.status_code == 400 and "input'[0] cannot be tokenized" in tokbad.json()["error"]["message"]
        assert not any("TOKBAD" in t for call in model.calls for t in call)  # refused before the batcher
        merged = [c for c in model.calls if "BOOM here" in c and len(c) > 2]
        assert merged, "the poison request was never merged with others; the test did not test merging"
        assert ["fine", "BOOM here"] in model.calls  # retried alone after the merged call failed
        after = httpx.post(url + "/v1/embeddings", json={"input": "still alive"}, timeout=30)
        assert after.status_code == 200
        health = httpx.get(url + "/healthz").json()
        assert health["failed"] == 1


def test_batcher_survives_failures_and_bad_shapes() -> None:
    import asyncio

    def encode(texts: list[str]) -> np.ndarray:
        if "BOOM" in texts:
            raise RuntimeError("x")
        if "SHORT" in texts:
            return np.zeros((len(texts) - 1, 4), np.float32)
        return np.stack([fake_vec(t) for t in texts])

    async def main() -> None:
        batcher = MicroBatcher(encode, max_batch=32, max_wait_s=0.05)
        await batcher.start()
        try:
            out = await asyncio.gather(batcher.encode(["a", "b"]), batcher.encode(["BOOM"]),
                                       batcher.encode(["SHORT"]), batcher.encode(["c"]), return_exceptions=True)
            assert np.allclose(out[0], [fake_vec("a"), fake_vec("b")]) and np.allclose(out[3], [fake_vec("c")])
            assert isinstance(out[1], RuntimeError) and isinstance(out[2], RuntimeError)
            assert np.allclose(await batcher.encode(["d"]), [fake_vec("d")])
            assert batcher.stats.failed == 2 and batcher.stats.encode_calls == 3  # a+b, c (alone), d
        finally:
            await batcher.stop()

    asyncio.run(main())


def _raw_request(url: str, head: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=15)
    sock.sendall(head.encode("latin-1"))
    return sock


def _read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_chunked_body_without_key_gets_401_before_the_body_is_read(real: dict[str, Any]) -> None:
    sock = _raw_request(real["url"], "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n")
    with sock:
        chunk = b'{"input": "' + b"a" * 60_000
        sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))  # the body never ends
        t = time.perf_counter()
        assert _read_status(sock) == 401
        assert time.perf_counter() - t < 5


def test_invalid_json_without_key_is_401_and_key_compared_in_constant_time(
        real: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = real["url"]
    r = httpx.post(url + "/v1/embeddings", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(url + "/v1/embeddings", content=b"{not json", headers={"Authorization": "Bearer sekreT"})
    assert r.status_code == 401
    assert (b"sekreT", KEY.encode()) in calls
    r = httpx.post(url + "/v1/embeddings", content=b"{not json", headers=AUTH)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


def test_oversized_chunked_body_gets_413_without_being_read_whole(real: dict[str, Any]) -> None:
    sock = _raw_request(real["url"], f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    total = 256 << 20  # 256 MiB offered against a 1 MiB limit
    sent = [0]
    status: list[int] = []
    reader = threading.Thread(target=lambda: status.append(_read_status(sock)), daemon=True)
    reader.start()
    chunk = b"[" + b"1," * 32767 + b"1"
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    t = time.perf_counter()
    with sock:
        try:
            while sent[0] < total and time.perf_counter() - t < 30:
                sock.sendall(frame)
                sent[0] += len(chunk)
        except OSError:
            pass  # the server closed the connection: it stopped reading
        reader.join(timeout=15)
    assert status == [413]
    assert sent[0] < 64 << 20  # the server stopped reading long before the body's end


def test_token_budget_and_bounded_token_id_input(real: dict[str, Any]) -> None:
    url = real["url"]
    long_texts = [" ".join(["a"] * 60) for _ in range(16)]  # 119 characters each, 16 x 62 tokens > 300
    r = httpx.post(url + "/v1/embeddings", headers=AUTH, json={"input": long_texts}, timeout=30)
    assert r.status_code == 413 and "--max-request-tokens" in r.json()["error"]["message"]
    assert httpx.post(url + "/v1/embeddings", headers=AUTH, json={"input": long_texts[:4]}).status_code == 200
    t = time.perf_counter()
    ids = httpx.post(url + "/v1/embeddings", headers=AUTH, json={"input": [1] * 400_000}, timeout=30)
    assert ids.status_code == 400 and time.perf_counter() - t < 10
    many = httpx.post(url + "/v1/embeddings", headers=AUTH, json={"input": [[1, 2, 3]] * 200_000}, timeout=30)
    assert many.status_code == 413  # over the body limit


def test_healthz_answers_while_bodies_are_parsed_and_batches_encoded() -> None:
    model = FakeModel(delay=1.0)
    app = create_app(model.fns(), model_name="fake", dim=4, max_body_bytes=8 << 20, max_wait_ms=5)
    with serving(app) as url:
        heavy = b'{"input": [' + b"7," * 3_000_000 + b'7]}'  # 6 MB of token ids: slow to parse
        stop = time.perf_counter() + 60

        def load() -> list[int]:
            codes = [httpx.post(url + "/v1/embeddings", content=heavy, timeout=60).status_code]
            codes.append(httpx.post(url + "/v1/embeddings", json={"input": ["slow"]}, timeout=60).status_code)
            return codes

        lat: list[float] = []

        def probe() -> None:
            model.started.wait(timeout=30)
            while len(lat) < 20 and time.perf_counter() < stop:
                t = time.perf_counter()
                assert httpx.get(url + "/healthz", timeout=30).status_code == 200
                lat.append(time.perf_counter() - t)
                time.sleep(0.05)

        results = _concurrently([load, load, load, probe])
        assert all(r == [400, 200] for r in results[:3]), results
        assert len(lat) == 20 and max(lat) < 0.75, lat


def test_internal_errors_name_no_internals(encoder: Encoder) -> None:
    class BrokenStore:
        dim = encoder.dim

        def __len__(self) -> int:
            return 3

        def search(self, *a: Any) -> Any:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

    app = create_app(encoder_fn(encoder), model_name="tiny", dim=encoder.dim, store=BrokenStore())
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/search", json={"query": "a man"})
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error"
        assert "Overflow" not in r.text and "SQLite" not in r.text


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"input": "a man", "model": "gpt-4"}, 404, "not served"),
    ({"input": "a man", "dimensions": True}, 400, "dimensions"),
    ({"input": "a man", "dimensions": 8.0}, 400, "dimensions"),
    ({"input": "a man", "dimensions": "8"}, 400, "dimensions"),
    ({"input": [True]}, 400, "input"),
    ({"input": "a man", "dimension": 8}, 400, "dimension: unknown field"),
])
def test_strict_embedding_requests(real: dict[str, Any], body: Any, status: int, words: str) -> None:
    r = httpx.post(real["url"] + "/v1/embeddings", headers=AUTH, json=body, timeout=30)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    assert "gpt-4" not in r.json().get("model", "")


def test_served_model_names_are_accepted(real: dict[str, Any]) -> None:
    r = httpx.post(real["url"] + "/v1/embeddings", headers=AUTH, json={"input": "a man", "model": "tiny"})
    assert r.status_code == 200 and r.json()["model"] == "tiny"
    r = httpx.post(real["url"] + "/v1/embeddings", headers=AUTH, json={"input": "a man", "model": "tiny2"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_strict_search_requests(encoder: Encoder, tmp_path: Path) -> None:
    from contrastkit.search import Store

    fns = encoder_fn(encoder)
    store = Store.create(tmp_path / "s", encoder.dim, "exact", encoder=fns.encode)
    store.add(make_sentences(6, seed=2), ids=[f"d{i}" for i in range(6)], metadata=[{"n": i} for i in range(6)])
    app = create_app(fns, model_name="tiny", dim=encoder.dim, store=store)
    cases = [
        ({"query": "a man", "k": True}, "k"),
        ({"query": "a man", "k": 2.0}, "k"),
        ({"query": "a man", "where": {"n": 10**30}}, "where.n"),
        ({"query": "a man", "where": {f"f{i}": 1 for i in range(5000)}}, "where"),
        ({"query": "a man", "where": {"n": True, "m": [1]}}, "where.m"),
        ({"query": "a man", "model": "other"}, "not served"),
    ]
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for body, words in cases:
                r = client.post("/v1/search", content=json.dumps(body))
                assert r.status_code in (400, 404), (body, r.text)
                assert words in r.json()["error"]["message"], r.text
            inf = client.post("/v1/search", content=b'{"query": "a man", "where": {"n": 1e400}}')
            assert inf.status_code == 400
            ok = client.post("/v1/search", json={"query": "a man", "k": 2, "where": {"n": 3}})
            assert ok.status_code == 200 and [h["id"] for h in ok.json()["data"][0]["hits"]] == ["d3"]
    finally:
        store.close()


def test_disconnected_client_is_dropped_not_encoded() -> None:
    model = FakeModel(delay=0.8)
    app = create_app(model.fns(), model_name="fake", dim=4, max_wait_ms=5)
    with serving(app) as url:
        first: list[Any] = []
        t = threading.Thread(target=lambda: first.append(
            httpx.post(url + "/v1/embeddings", json={"input": "first"}, timeout=30)))
        t.start()
        assert model.started.wait(timeout=30)  # the encoder is busy with "first"
        body = b'{"input": "DROPME"}'
        sock = _raw_request(url, f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\n\r\n")
        sock.sendall(body)
        time.sleep(0.2)  # parsed and queued behind "first"
        sock.close()  # the client gives up
        t.join(timeout=30)
        assert first[0].status_code == 200
        time.sleep(1.2)  # a batch of DROPME would have run by now
        assert not any("DROPME" in c for c in model.calls), model.calls
        assert httpx.get(url + "/healthz").json()["dropped"] == 1


def test_serve_command_prints_listening_and_serves(tiny_bert: Path) -> None:
    cmd = [sys.executable, "-m", "contrastkit.cli", "serve", "--model", str(tiny_bert), "--port", "0",
           "--api-key", KEY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if "listening on" in line:
                break
        m = re.search(r"^listening on (http://127\.0\.0\.1:(\d+))$", lines[-1].strip()) if lines else None
        assert m and int(m.group(2)) > 0, lines
        r = httpx.post(m.group(1) + "/v1/embeddings", headers=AUTH,
                       json={"input": "a man", "model": str(tiny_bert)}, timeout=30)
        assert r.status_code == 200 and r.json()["model"] == str(tiny_bert)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
