"""Pure serving logic: request validation, limits, error shape, encoding, dimensions, token counting. No Ray."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from syncse_ray.serve.protocol import (
    ApiError,
    Limits,
    check_model,
    parse_embeddings_request,
    parse_json,
    parse_search_request,
)
from syncse_ray.serve.responses import embeddings_response, from_base64, to_base64, truncate_dimensions
from syncse_ray.serve.tokens import count_tokens

LIMITS = Limits(max_inputs_per_request=4, max_input_chars=50, max_body_bytes=1000, max_top_k=20)


def _error(fn, *args) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    assert 400 <= info.value.status < 500
    body = info.value.body()
    assert set(body["error"]) >= {"message", "type", "code"} and body["error"]["message"]
    return info.value


def test_embeddings_request_accepts_string_or_list():
    assert parse_embeddings_request({"input": "hi", "model": "m"}, LIMITS).texts == ["hi"]
    req = parse_embeddings_request({"input": ["a", "b"], "encoding_format": "base64", "dimensions": 8}, LIMITS)
    assert req.texts == ["a", "b"] and req.encoding_format == "base64" and req.dimensions == 8


@pytest.mark.parametrize("payload, code, param", [
    ({"input": []}, "empty_input", "input"),
    ({"input": ""}, "empty_input", "input"),
    ({"input": ["ok", ""]}, "empty_input", "input"),
    ({"input": ["ok", 3]}, "invalid_value", "input.1"),
    ({"input": [[1, 2, 3]]}, "invalid_value", "input.0"),
    ({"input": None}, "invalid_value", "input"),
    ({"model": "m"}, "invalid_value", "input"),
    ({"input": ["x"] * 5}, "too_many_inputs", "input"),
    ({"input": "x" * 51}, "input_too_long", "input"),
    ({"input": ["ok", "bad \ud800 surrogate"]}, "invalid_value", "input"),
    ({"input": "x", "encoding_format": "int8"}, "invalid_value", "encoding_format"),
    ({"input": "x", "dimensions": 0}, "invalid_value", "dimensions"),
    ({"input": "x", "dimensions": "8"}, "invalid_value", "dimensions"),
    ({"input": "x", "top_k": 3}, "invalid_value", "top_k"),
])
def test_embeddings_request_rejects_bad_input(payload, code, param):
    err = _error(parse_embeddings_request, payload, LIMITS)
    assert (err.status, err.code, err.param) == (400, code, param), err.message


def test_non_object_and_bad_json_are_400():
    assert _error(parse_embeddings_request, ["x"], LIMITS).status == 400
    assert _error(parse_json, b"{not json").code == "invalid_json"
    assert _error(parse_json, b"").code == "invalid_json"
    assert _error(parse_json, b"\xff\xfe{").code == "invalid_json"
    assert _error(parse_json, b"[" * 100_000 + b"]" * 100_000).code == "invalid_json"  # nesting
    assert _error(parse_json, b'{"top_k": ' + b"9" * 5000 + b"}").code == "invalid_json"  # int digits limit
    assert parse_json(b'{"input": "x"}') == {"input": "x"}


def test_search_request_validation():
    assert parse_search_request({"query": "q", "top_k": 3}, LIMITS).texts == ["q"]
    assert parse_search_request({"queries": ["a", "b"]}, LIMITS).top_k == 10
    for payload, param in [({"query": "q", "queries": ["a"]}, "query"), ({}, "query"),
                           ({"query": "q", "top_k": 0}, "top_k"), ({"query": "q", "top_k": 21}, "top_k"),
                           ({"query": "q", "top_k": "5"}, "top_k"), ({"query": "q", "top_k": 2.5}, "top_k"),
                           ({"queries": []}, "queries"), ({"queries": ["a", 1]}, "queries.1")]:
        assert _error(parse_search_request, payload, LIMITS).param == param, payload


def test_unknown_model_is_404():
    check_model(None, {"m"})
    check_model("m", {"m"})
    err = _error(check_model, "gpt-4", {"m"})
    assert (err.status, err.code) == (404, "model_not_found")


def test_dimensions_truncate_and_renormalize():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cut = truncate_dimensions(vectors, 4)
    assert cut.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cut, vectors[:, :4] / np.linalg.norm(vectors[:, :4], axis=1, keepdims=True),
                               rtol=1e-6)
    assert truncate_dimensions(vectors, 16) is vectors and truncate_dimensions(vectors, None) is vectors
    err = _error(truncate_dimensions, vectors, 17)
    assert err.param == "dimensions"


def test_base64_is_little_endian_float32():
    vector = np.array([1.0, -2.5, 3.25e-3], dtype=np.float32)
    raw = base64.b64decode(to_base64(vector))
    assert raw == vector.astype("<f4").tobytes() and len(raw) == 12
    np.testing.assert_array_equal(from_base64(to_base64(vector)), vector)


def test_embeddings_response_shape():
    vectors = np.eye(2, 3, dtype=np.float32)
    body = embeddings_response(vectors, encoding_format="float", model="m", prompt_tokens=7)
    assert body["object"] == "list" and body["model"] == "m"
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][1]["embedding"] == [0.0, 1.0, 0.0]
    b64 = embeddings_response(vectors, encoding_format="base64", model="m", prompt_tokens=7)
    np.testing.assert_array_equal(from_base64(b64["data"][0]["embedding"]), vectors[0])


def test_token_counts_truncate_to_max_tokens(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    counts = count_tokens(tokenizer, ["hello world", "word " * 300], max_tokens=16)
    assert counts.per_input == [4, 16]  # [CLS] hello world [SEP]; the long input is cut to 16
    assert counts.lengths[1] > 300
    assert counts.truncated == 1 and counts.total == 20


def test_openapi_documents_the_request_bodies_the_handlers_read():
    import jsonschema

    from syncse_ray.serve.http import ApiBackend, create_api

    async def embed(texts):  # never called: only the schema is read
        raise AssertionError

    api = create_api(ApiBackend(embed=embed, model_id="m", served_names={"m"}, dimension=8, max_tokens=16,
                                limits=LIMITS))
    document = api.openapi()
    paths = document["paths"]
    for path, good, bad, why in (
            ("/v1/embeddings", {"input": ["a", "b"], "model": "m"}, {"input": [1, 2]}, "1 is not of type 'string'"),
            ("/v1/search", {"query": "q", "top_k": 3}, {"query": "q", "top_k": "3"}, "'3' is not of type 'integer'")):
        post = paths[path]["post"]
        schema = {**post["requestBody"]["content"]["application/json"]["schema"],
                  "components": document["components"]}
        jsonschema.validate(good, schema)
        with pytest.raises(jsonschema.ValidationError, match=why):
            jsonschema.validate(bad, schema)
        error_ref = post["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"]
        assert "error" in document["components"]["schemas"][error_ref.rsplit("/", 1)[1]]["properties"]
    assert "input" in document["components"]["schemas"]["EmbeddingsRequest"]["required"]
