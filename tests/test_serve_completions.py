"""POST /v1/completions: the openai client over real HTTP, strategies as extra fields, strict 4xx, and the
service's other endpoints unaffected. A tiny random Llama generates; a fake encoder serves embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import build_tiny_llama, serving

from contrastkit.generation import generate
from contrastkit.serve import EncodeFns, create_app, generator_fn

KEY = "sekret"
PROMPTS = ["a man is playing the guitar", "the dog"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Iterator[dict[str, Any]]:
    from contrastkit.lm import load_causal_lm

    path = build_tiny_llama(tmp_path_factory.mktemp("cmpl-llama"), layers=4, tie=False, seed=3)
    model, tok = load_causal_lm(path)
    fns = EncodeFns(lambda texts: np.ones((len(texts), 4), dtype=np.float32), lambda texts: [1] * len(texts))
    app = create_app(fns, model_name="enc", dim=4, api_key=KEY, max_batch=8, max_text_chars=200,
                     generator=generator_fn(model, tok), generator_name="tiny-llama", max_completion_tokens=12)
    with serving(app) as url:
        yield {"url": url, "model": model, "tok": tok}


def _client(server: dict[str, Any]) -> Any:
    import openai

    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)


def test_openai_client_strategies_match_generate(server):
    client = _client(server)
    model, tok = server["model"], server["tok"]
    r = client.completions.create(model="tiny-llama", prompt=PROMPTS, max_tokens=6,
                                  extra_body={"strategy": "contrastive_search", "penalty_alpha": 0.6, "top_k": 4})
    expect = generate(model, tok, PROMPTS, strategy="contrastive_search", penalty_alpha=0.6, top_k=4,
                      max_new_tokens=6)
    assert r.object == "text_completion" and r.model == "tiny-llama" and r.id.startswith("cmpl-")
    assert [c.text for c in r.choices] == [c.text for c in expect]
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.logprobs is None and c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.completion_tokens == sum(len(c.token_ids) for c in expect)
    assert r.usage.prompt_tokens == sum(len(x) for x in tok(PROMPTS)["input_ids"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    # greedy at temperature 0 (OpenAI's way), one prompt as a string; a seed on a deterministic strategy is moot
    g = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=5, temperature=0, seed=3)
    assert g.choices[0].text == generate(model, tok, PROMPTS[:1], max_new_tokens=5)[0].text
    # nucleus sampling with a seed is reproducible and equals generate()
    kw = {"model": "tiny-llama", "prompt": PROMPTS, "max_tokens": 6, "top_p": 0.9, "seed": 11}
    s1, s2 = client.completions.create(**kw), client.completions.create(**kw)
    expect = generate(model, tok, PROMPTS, strategy="sample", top_p=0.9, seed=11, max_new_tokens=6)
    assert [c.text for c in s1.choices] == [c.text for c in s2.choices] == [c.text for c in expect]
    # DoLa and contrastive decoding with an early-exit amateur
    d = client.completions.create(model="tiny-llama", prompt=PROMPTS, max_tokens=4,
                                  extra_body={"strategy": "dola", "dola_layers": [0, 2]})
    assert [c.text for c in d.choices] == [c.text for c in generate(model, tok, PROMPTS, strategy="dola",
                                                                     dola_layers=[0, 2], max_new_tokens=4)]
    cd = client.completions.create(model="tiny-llama", prompt=PROMPTS, max_tokens=4,
                                   extra_body={"strategy": "contrastive_decoding", "amateur_layer": 1, "beta": 1.0})
    assert [c.text for c in cd.choices] == [c.text for c in generate(
        model, tok, PROMPTS, strategy="contrastive_decoding", amateur_layer=1, beta=1.0, max_new_tokens=4)]


def test_stop_sequences_cut_the_text(server):
    client = _client(server)
    full = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=8, temperature=0)
    text = full.choices[0].text
    words = text.split()
    assert len(words) >= 3
    cut = client.completions.create(model="tiny-llama", prompt=PROMPTS[0], max_tokens=8, temperature=0,
                                    stop=[" " + words[2], "zzz"])
    assert cut.choices[0].text == text[:text.find(" " + words[2])]
    assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"prompt": "a dog", "n": 2}, 400, "n must be 1"),
    ({"prompt": "a dog", "stream": True}, 400, "streaming"),
    ({"prompt": "a dog", "logprobs": 2}, 400, "logprobs"),
    ({"prompt": "a dog", "max_tokens": 100}, 400, "limit of 12"),
    ({"prompt": "a dog", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": ""}, 400, "empty"),
    ({"prompt": []}, 400, "empty"),
    ({"prompt": [1, 2, 3]}, 400, "prompt"),
    ({"prompt": ["a"] * 9}, 413, "at most 8"),
    ({"prompt": "a dog", "strategy": "beam"}, 400, "strategy"),
    ({"prompt": "a dog", "strategy": "greedy", "penalty_alpha": 0.6}, 400, "takes no penalty_alpha"),
    ({"prompt": "a dog", "strategy": "contrastive_search", "temperature": 0.7}, 400, "takes no temperature"),
    ({"prompt": "a dog", "strategy": "contrastive_decoding"}, 400, "needs amateur_layer"),
    ({"prompt": "a dog", "strategy": "contrastive_decoding", "amateur_layer": 9}, 400, "outside"),
    ({"prompt": "a dog", "strategy": "sample", "temperature": 0}, 400, "greedy"),
    ({"prompt": "a dog", "temperature": "hot"}, 400, "temperature"),
    ({"prompt": "a dog", "frobnicate": 1}, 400, "unknown field"),
    ({"prompt": "a dog", "model": "gpt-4"}, 404, "not served"),
])
def test_bad_completion_requests_get_clear_4xx(server, body, status, words):
    r = httpx.post(server["url"] + "/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"},
                   timeout=30)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_auth_and_other_endpoints_unaffected(server):
    r = httpx.post(server["url"] + "/v1/completions", json={"prompt": "a dog"}, timeout=30)
    assert r.status_code == 401
    headers = {"Authorization": f"Bearer {KEY}"}
    e = httpx.post(server["url"] + "/v1/embeddings", json={"input": ["a", "b"]}, headers=headers, timeout=30)
    assert e.status_code == 200 and len(e.json()["data"]) == 2
    assert httpx.get(server["url"] + "/healthz", timeout=30).json()["status"] == "ok"
    rr = httpx.post(server["url"] + "/v1/rerank", json={"query": "a", "documents": ["b"]}, headers=headers, timeout=30)
    assert rr.status_code == 400 and "no reranker" in rr.json()["error"]["message"]


def test_server_without_generator_says_so():
    fns = EncodeFns(lambda texts: np.ones((len(texts), 4), dtype=np.float32), lambda texts: [1] * len(texts))
    app = create_app(fns, model_name="enc", dim=4)
    with serving(app) as url:
        r = httpx.post(url + "/v1/completions", json={"prompt": "a dog"}, timeout=30)
    assert r.status_code == 400 and "no generator" in r.json()["error"]["message"]
