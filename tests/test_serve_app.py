"""The Serve app end to end: real local Ray, real Serve HTTP proxy on a free loopback port, real model, FAISS.

One application for the whole module (auth on, small limits so the limit tests stay cheap).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from syncse_ray.serve.responses import from_base64

pytestmark = pytest.mark.slow  # a local Ray cluster and a Serve HTTP proxy

API_KEY = "test-key-0123456789"
KEY_ENV = "SYNCSE_TEST_SERVE_KEY"
MAX_INPUTS = 64
MAX_CHARS = 3000
MAX_BODY = 100_000
CORPUS = [
    ("cat", "A cat is sleeping on the warm windowsill."),
    ("stock", "The stock market fell sharply after the interest rate announcement."),
    ("pasta", "Boil the pasta in salted water for ten minutes."),
    ("rocket", "The rocket launched into orbit carrying two satellites."),
    ("soccer", "The football team won the championship final on penalties."),
    ("rain", "Heavy rain flooded the streets of the old town."),
]
QUERIES = {
    "A kitten naps in the sun by the window.": "cat",
    "Shares dropped after the central bank raised rates.": "stock",
    "How long should I cook spaghetti?": "pasta",
    "A spacecraft was sent into space.": "rocket",
    "Who won the soccer cup?": "soccer",
}
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "Ray Serve batches requests dynamically.",
    "Ünïcödé text — with emoji 🚀 and accents: café, naïve.",
    "short",
]


@dataclass(frozen=True)
class Server:
    url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def server(ray_local, minilm_path, tmp_path_factory, free_port):
    import os

    from ray import serve

    from syncse_ray.serve.app import build_app

    corpus = tmp_path_factory.mktemp("serve") / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in CORPUS))
    os.environ[KEY_ENV] = API_KEY
    try:
        app = build_app(model=str(minilm_path), corpus=corpus, api_key_env=KEY_ENV, max_batch_size=16,
                        max_inputs_per_request=MAX_INPUTS, max_input_chars=MAX_CHARS, max_body_bytes=MAX_BODY,
                        max_top_k=10, num_replicas=1)
    finally:
        del os.environ[KEY_ENV]
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(app, name="syncse-test", route_prefix="/")
    yield Server(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_KEY}"})
    serve.shutdown()


@pytest.fixture(scope="module")
def reference(minilm_path):
    """What the endpoint must match: sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


def _post(server: Server, path: str, payload, **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=payload, headers=server.headers, timeout=60, **kw)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if code is not None:
        assert error["code"] == code, error
    return error


def test_embeddings_parity_raw_http(server, reference):
    expected = reference.encode(TEXTS)
    for fmt in ("float", "base64"):
        response = _post(server, "/v1/embeddings", {"input": TEXTS, "model": "model", "encoding_format": fmt})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list" and [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
        if fmt == "float":
            got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        else:
            got = np.stack([from_base64(d["embedding"]) for d in body["data"]])
        assert got.shape == (len(TEXTS), 384)
        assert _cosines(got, expected).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(TEXTS)
    single = _post(server, "/v1/embeddings", {"input": TEXTS[0]}).json()
    assert len(single["data"]) == 1 and _cosines(np.array([single["data"][0]["embedding"]]), expected[:1])[0] >= 0.9999


def test_embeddings_parity_openai_client(server, reference):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
    expected = reference.encode(TEXTS)
    model_id = client.models.list().data[0].id
    for fmt in ("float", "base64"):
        result = client.embeddings.create(input=TEXTS, model=model_id, encoding_format=fmt)
        # An explicit "base64" comes back as the strings; the client decodes only when it chose base64 itself.
        got = np.array([from_base64(d.embedding) if fmt == "base64" else d.embedding for d in result.data],
                       dtype=np.float32)
        assert _cosines(got, expected).min() >= 0.9999, fmt
        assert result.usage.prompt_tokens > 0 and result.model == model_id
    default = client.embeddings.create(input=TEXTS[1], model=model_id)  # the client asks for base64 itself
    assert _cosines(np.array([default.data[0].embedding]), expected[1:2])[0] >= 0.9999
    short = client.embeddings.create(input=TEXTS[:2], model=model_id, dimensions=64)
    prefix = expected[:2, :64] / np.linalg.norm(expected[:2, :64], axis=1, keepdims=True)
    got = np.array([d.embedding for d in short.data], dtype=np.float32)
    assert got.shape == (2, 64) and _cosines(got, prefix).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_long_input_is_truncated_and_counted(server, reference):
    long_text = "word " * 500  # ~500 tokens, the model keeps 256
    response = _post(server, "/v1/embeddings", {"input": [long_text, "hello world"]})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == 256 + 4
    assert response.headers["x-syncse-truncated-inputs"] == "1"
    got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
    assert _cosines(got, reference.encode([long_text, "hello world"])).min() >= 0.9999


def test_search_returns_known_neighbours(server):
    body = _post(server, "/v1/search", {"queries": list(QUERIES), "top_k": 3}).json()
    assert [row["results"][0]["id"] for row in body["data"]] == list(QUERIES.values())
    for row in body["data"]:
        scores = [r["score"] for r in row["results"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    one = _post(server, "/v1/search", {"query": "a sleepy cat", "top_k": 10}).json()["data"]
    assert len(one) == 1 and one[0]["results"][0]["text"] == CORPUS[0][1]
    assert len(one[0]["results"]) == len(CORPUS)  # top_k above the corpus size returns the whole corpus


def test_models_and_healthz(server):
    assert httpx.get(server.url + "/healthz", timeout=30).json() == {"status": "ok"}  # no key needed
    model = httpx.get(server.url + "/v1/models", headers=server.headers, timeout=30).json()["data"][0]
    assert model["object"] == "model" and model["dimensions"] == 384 and model["index_size"] == len(CORPUS)


@pytest.mark.parametrize("payload, status, code", [
    ({"input": []}, 400, "empty_input"),
    ({"input": ""}, 400, "empty_input"),
    ({"input": ["ok", 5]}, 400, "invalid_value"),
    ({"input": [[101, 2023]]}, 400, "invalid_value"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, 400, "too_many_inputs"),
    ({"input": "x" * (MAX_CHARS + 1)}, 400, "input_too_long"),
    ({"input": "x", "dimensions": 385}, 400, "invalid_value"),
    ({"input": "x", "dimensions": -1}, 400, "invalid_value"),
    ({"input": "x", "encoding_format": "int8"}, 400, "invalid_value"),
    ({"input": "x", "model": "gpt-4"}, 404, "model_not_found"),
    ({"input": "x", "unknown": 1}, 400, "invalid_value"),
    (["x"], 400, "invalid_request"),
])
def test_bad_embeddings_input_is_4xx(server, payload, status, code):
    _assert_error(_post(server, "/v1/embeddings", payload), status, code)


@pytest.mark.parametrize("payload, code", [
    ({"query": "q", "top_k": 0}, "invalid_value"),
    ({"query": "q", "top_k": 11}, "invalid_value"),
    ({"query": "q", "top_k": "3"}, "invalid_value"),
    ({"query": "q", "queries": ["a"]}, "invalid_request"),
    ({"queries": []}, "empty_input"),
    ({"top_k": 3}, "invalid_request"),
])
def test_bad_search_input_is_400(server, payload, code):
    _assert_error(_post(server, "/v1/search", payload), 400, code)


def test_malformed_and_oversize_bodies(server):
    headers = {**server.headers, "content-type": "application/json"}
    _assert_error(httpx.post(server.url + "/v1/embeddings", content=b"{nope", headers=headers, timeout=30),
                  400, "invalid_json")
    for raw, code in ((b'{"input": ["fine", "\\ud800"]}', "invalid_value"),  # lone surrogate: 400, not 500
                      (b"[" * 50_000 + b"]" * 50_000, "invalid_json")):
        _assert_error(httpx.post(server.url + "/v1/embeddings", content=raw, headers=headers, timeout=30),
                      400, code)
    big = json.dumps({"input": ["y" * 2000] * 60}).encode()  # within input limits, over the body limit
    assert len(big) > MAX_BODY
    _assert_error(httpx.post(server.url + "/v1/embeddings", content=big, headers=headers, timeout=30),
                  413, "request_too_large")

    def chunks():  # no content-length: the limit holds while streaming
        for _ in range(len(big) // 10_000 + 1):
            yield big[:10_000]

    _assert_error(httpx.post(server.url + "/v1/embeddings", content=chunks(), headers=headers, timeout=30),
                  413, "request_too_large")
    _assert_error(httpx.get(server.url + "/v1/nothing", headers=server.headers, timeout=30), 404, "not_found")


def test_auth_required_on_every_route_but_healthz(server):
    from openai import AuthenticationError, OpenAI

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        for method, path in (("POST", "/v1/embeddings"), ("POST", "/v1/search"), ("GET", "/v1/models")):
            response = httpx.request(method, server.url + path, json={"input": "x", "query": "x"},
                                     headers=headers, timeout=30)
            _assert_error(response, 401, "invalid_api_key")
        assert httpx.get(server.url + "/healthz", headers=headers, timeout=30).status_code == 200
    client = OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(AuthenticationError, match="^Error code: 401 - missing or invalid API key") as caught:
        client.embeddings.create(input="x", model="model")
    assert caught.value.code == "invalid_api_key"


def test_concurrent_load_has_no_errors(server, reference):
    """32 concurrent loopback clients, 6 requests each of 1-8 texts, mixed formats: all 200 and correct, and
    `@serve.batch` merged concurrent requests into shared model batches."""
    clients, per_client = 32, 6
    texts = [f"sentence number {i} about topic {i % 7}" for i in range(8)]
    expected = reference.encode(texts)

    async def client(n: int, http: httpx.AsyncClient) -> list[str]:
        problems = []
        for r in range(per_client):
            batch = texts[: 1 + (n + r) % 8]
            fmt = "base64" if (n + r) % 2 else "float"
            response = await http.post("/v1/embeddings", json={"input": batch, "encoding_format": fmt})
            if response.status_code != 200:
                problems.append(f"{response.status_code}: {response.text[:200]}")
                continue
            data = response.json()["data"]
            got = np.array([from_base64(d["embedding"]) if fmt == "base64" else d["embedding"] for d in data])
            if _cosines(got, expected[: len(batch)]).min() < 0.9999:
                problems.append("wrong vectors")
        return problems

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers, timeout=60,
                                     limits=limits) as http:
            results = await asyncio.gather(*(client(n, http) for n in range(clients)))
        return [p for r in results for p in r]

    from ray import serve

    embedder = serve.get_deployment_handle("Embedder", app_name="syncse-test")
    before = embedder.batching_stats.remote().result()
    problems = asyncio.run(run())  # a hang is bounded by each request's 60 s and the test's process timeout
    assert problems == [], problems[:5]
    after = embedder.batching_stats.remote().result()
    calls, batches = after["calls"] - before["calls"], after["batches"] - before["batches"]
    assert calls == clients * per_client and batches < calls  # concurrent requests shared model batches


@pytest.mark.timeout(900)  # bounds a hang; the run itself is bounded by its number of cases, not by time
def test_schemathesis_against_the_served_app(server):
    """schemathesis 4 over the live Serve app on loopback (its own /openapi.json): every operation, positive
    and negative cases, bounded in count; no 5xx and every response as documented."""
    import schemathesis
    from _schemathesis import config, run

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json", config=config())
    stats = run(schema, headers=server.headers, max_examples=100)
    print(f"schemathesis served: {stats.requests} requests, statuses {dict(stats.statuses)}, "
          f"per operation {dict(stats.per_operation)}, no cases: {stats.no_cases}")
    assert stats.failures == [], stats.failures[:3]
    assert stats.server_errors == 0 and stats.requests >= 100
    served = httpx.get(server.url + "/openapi.json", timeout=30).json()["paths"]
    assert {t.rsplit(" ", 1)[0] for t in stats.tried} == {f"{m.upper()} {p}" for p, item in served.items()
                                                           for m in item}
    assert stats.untested == []  # every operation and mode that has cases was sent
