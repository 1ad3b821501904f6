"""The HTTP API in-process, without Ray: the FastAPI app over a stub backend (deterministic vectors, a tiny
index). Its OpenAPI document (request, response and error bodies, limits, auth), the error shape and order
(auth, then size, then JSON, then validation), and a bounded schemathesis run over the ASGI app."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from syncse_ray.config.serve import RequestLimits
from syncse_ray.serve.http import ApiBackend, create_api
from syncse_ray.serve.index import VectorIndex
from syncse_ray.serve.protocol import EmbeddingsResponse, ErrorResponse, Health, ModelList, SearchResponse
from syncse_ray.serve.responses import unit_float32 as normalize
from syncse_ray.serve.tokens import TokenCounts

KEY = "k-0123"
DIM = 8
LIMITS = RequestLimits(max_inputs_per_request=4, max_input_chars=50, max_body_bytes=2000, max_top_k=5)
AUTH = {"Authorization": f"Bearer {KEY}"}


def _vectors(texts: list[str]) -> np.ndarray:
    rows = [np.frombuffer(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[:DIM], np.uint8)
            for t in texts]
    return normalize(np.asarray(rows, dtype=np.float32) - 127.5)


async def _embed(texts: list[str]) -> tuple[np.ndarray, TokenCounts]:
    return _vectors(texts), TokenCounts([2 + len(t.split()) for t in texts], max_tokens=6)


def _app(api_key: str | None = KEY, with_index: bool = True):
    corpus = ["a cat sleeps", "stocks fell", "boil the pasta"]
    index = VectorIndex.from_vectors(_vectors(corpus), ["cat", "stock", "pasta"], corpus, model="stub") \
        if with_index else None
    return create_api(ApiBackend(embed=_embed, model_id="stub", served_names={"stub", "/models/stub"},
                                 dimension=DIM, max_tokens=6, limits=LIMITS, api_key=api_key, index=index))


@pytest.fixture(scope="module")
def client():
    return TestClient(_app(), raise_server_exceptions=False)


def test_openapi_has_typed_request_response_and_error_bodies(client):
    document = client.get("/openapi.json").json()  # no key needed for the schema (nor /docs)
    schemas, paths = document["components"]["schemas"], document["paths"]
    for path in ("/v1/embeddings", "/v1/search"):
        body = paths[path]["post"]["requestBody"]
        assert body["required"] and body["content"]["application/json"]["schema"]["$ref"].endswith(
            {"/v1/embeddings": "EmbeddingsRequest", "/v1/search": "SearchRequest"}[path])
    routes = {("/v1/embeddings", "post"): "EmbeddingsResponse", ("/v1/search", "post"): "SearchResponse",
              ("/v1/models", "get"): "ModelList", ("/healthz", "get"): "Health"}
    for (path, method), model in routes.items():
        responses = paths[path][method]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model), path
        assert "422" not in responses  # errors are OpenAI-shaped 400s, never FastAPI's 422
        for status in {"/healthz": []}.get(path, ["401", "4XX"]):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    for path in ("/v1/embeddings", "/v1/search"):
        assert {"400", "401", "404", "413"} <= set(paths[path]["post"]["responses"])
    assert set(schemas["ErrorResponse"]["properties"]) == {"error"}
    assert set(schemas["ErrorDetail"]["properties"]) == {"message", "type", "param", "code"}
    # The limits are in the schema.
    request = schemas["EmbeddingsRequest"]
    text, texts = request["properties"]["input"]["anyOf"]
    assert (text["minLength"], text["maxLength"], texts["minItems"], texts["maxItems"]) == (1, 50, 1, 4)
    assert request["properties"]["dimensions"]["anyOf"][0]["maximum"] == DIM
    assert request["additionalProperties"] is False and "token-id arrays" in request["description"].lower()
    assert schemas["SearchRequest"]["properties"]["top_k"]["maximum"] == LIMITS.max_top_k
    assert schemas["SearchRequest"]["oneOf"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert client.get("/docs").status_code == 200


def test_responses_match_their_models(client):
    response = client.post("/v1/embeddings", json={"input": ["a b", "c"], "encoding_format": "base64"},
                           headers=AUTH)
    assert response.status_code == 200 and response.headers["x-syncse-truncated-inputs"] == "0"
    body = EmbeddingsResponse.model_validate(response.json())
    assert [d.index for d in body.data] == [0, 1] and body.usage.prompt_tokens == 4 + 3
    short = client.post("/v1/embeddings", json={"input": "x", "dimensions": 4}, headers=AUTH).json()
    assert len(short["data"][0]["embedding"]) == 4
    hits = SearchResponse.model_validate(client.post("/v1/search", json={"query": "a cat sleeps", "top_k": 2},
                                                     headers=AUTH).json())
    assert hits.data[0].results[0].id == "cat" and len(hits.data[0].results) == 2
    models = ModelList.model_validate(client.get("/v1/models", headers=AUTH).json())
    assert models.data[0].dimensions == DIM and models.data[0].index_size == 3
    assert Health.model_validate(client.get("/healthz").json()).status == "ok"


@pytest.mark.parametrize("payload, status, code, param", [
    ({"input": [[101, 2023]]}, 400, "invalid_value", "input.0"),  # token arrays: refused, documented
    ({"input": [1, 2]}, 400, "invalid_value", "input.0"),
    ({"input": []}, 400, "empty_input", "input"),
    ({"input": ["x"] * 5}, 400, "too_many_inputs", "input"),
    ({"input": "x" * 51}, 400, "input_too_long", "input"),
    ({"input": "x", "dimensions": DIM + 1}, 400, "invalid_value", "dimensions"),
    ({"input": "x", "model": "gpt-4"}, 404, "model_not_found", "model"),
    ({"input": "x", "extra": 1}, 400, "invalid_value", "extra"),
    (["x"], 400, "invalid_request", None),
])
def test_bad_embeddings_are_openai_errors(client, payload, status, code, param):
    response = client.post("/v1/embeddings", json=payload, headers=AUTH)
    assert response.status_code == status, response.text
    error = ErrorResponse.model_validate(response.json()).error
    assert (error.code, error.param) == (code, param) and error.message
    if payload == {"input": [[101, 2023]]}:
        assert "token arrays are not supported" in error.message


def test_order_auth_then_size_then_json(client):
    big = b"{" + b" " * 5000 + b"}"
    assert client.post("/v1/embeddings", content=big).json()["error"]["code"] == "invalid_api_key"
    assert client.post("/v1/embeddings", content=b"{nope").status_code == 401
    response = client.post("/v1/embeddings", content=big, headers=AUTH)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")

    def chunks():  # no content-length: the limit holds while streaming
        for _ in range(5):
            yield b" " * 1000

    response = client.post("/v1/embeddings", content=chunks(), headers=AUTH)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")
    assert client.post("/v1/embeddings", content=b"{nope", headers=AUTH).json()["error"]["code"] == "invalid_json"
    # A JSON body is read as JSON whatever its content type (as before the typed API).
    plain = client.post("/v1/embeddings", content=json.dumps({"input": "x"}).encode(),
                        headers={**AUTH, "content-type": "text/plain"})
    assert plain.status_code == 200, plain.text
    assert client.get("/v1/models").status_code == 401 and client.get("/healthz").status_code == 200
    assert client.get("/v1/nothing", headers=AUTH).json()["error"]["code"] == "not_found"
    assert client.get("/v1/embeddings", headers=AUTH).json()["error"]["code"] == "method_not_allowed"


def test_search_without_an_index_is_404():
    client = TestClient(_app(api_key=None, with_index=False))
    response = client.post("/v1/search", json={"query": "q"})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "no_index")
    assert "securitySchemes" not in client.get("/openapi.json").json()["components"]


@pytest.mark.slow  # ~10 s of generated requests; CI runs it (and the one against the served app)
def test_schemathesis_in_process():
    """Bounded schemathesis run over the ASGI app (stub model): no 5xx, every response as documented, schema-
    valid bodies accepted and schema-invalid ones refused."""
    import schemathesis
    from _schemathesis import config, run

    schema = schemathesis.openapi.from_asgi("/openapi.json", _app(), config=config())
    stats = run(schema, headers=AUTH, max_examples=100)  # bounded by cases, not time (tests/_schemathesis.py)
    print(f"schemathesis in-process: {stats.requests} requests, statuses {dict(stats.statuses)}, "
          f"per operation {dict(stats.per_operation)}, no cases: {stats.no_cases}")
    assert stats.failures == [] and stats.server_errors == 0
    # every documented operation, valid and invalid bodies alike, was sent and answered as documented
    operations = {f"{method.upper()} {path}" for path, item in _app().openapi()["paths"].items() for method in item}
    assert {t.rsplit(" ", 1)[0] for t in stats.tried} == operations
    assert stats.untested == [] and stats.requests >= 4 * 10
