"""Request models, limits and the OpenAI error shape for the embeddings and search endpoints. No Ray here."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from syncse_ray.config.serve import RequestLimits


class ApiError(Exception):
    """An error answered in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)


def error_body(message: str, *, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error JSON."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


Limits = RequestLimits  # the request limits of `syncse_ray.config.ServeConfig`


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EmbeddingsRequest(_Request):
    """The OpenAI embeddings request. Token-array inputs (lists of ints) are not supported."""

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, gt=0)
    user: StrictStr | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class SearchRequest(_Request):
    """Nearest corpus entries for one `query` or a list of `queries`."""

    query: StrictStr | None = None
    queries: list[StrictStr] | None = None
    top_k: StrictInt = 10
    model: StrictStr | None = None

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI of a route whose handler reads its body itself (streamed under a size limit, OpenAI-style
    errors): the JSON body `model` validates, and the error shape of every 4xx."""
    error = {"type": "object", "properties": {"error": {"type": "object", "properties": {
        k: {"type": "string"} for k in ("message", "type", "param", "code")}}}}
    return {"requestBody": {"required": True, "content": {"application/json": {
                "schema": model.model_json_schema(mode="validation")}}},
            "responses": {"4XX": {"description": "an OpenAI error object",
                                  "content": {"application/json": {"schema": error}}}}}


def parse_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON is a 400."""
    if not body:
        raise ApiError(400, "the request body is empty; expected a JSON object", code="invalid_json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or encoding, absurd numbers, absurd nesting
        raise ApiError(400, f"the request body is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}",
                       code="invalid_json") from None


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    # A union (`str | list[str]`) reports one error per branch: the deepest one names the offending item.
    first = max(err.errors(), key=lambda e: len(e["loc"]))
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("str", "list[")))
    if first["type"] == "extra_forbidden":
        return f"unknown field {loc!r}", loc
    if first["type"] == "missing":
        return f"missing required field {loc!r}", loc
    if loc.split(".")[0] in ("input", "query", "queries") and first["type"] in ("string_type", "list_type"):
        return f"{loc}: every input must be a string or a list of strings (token arrays are not supported)", loc
    return f"{loc}: {first['msg']}", loc or None


def _check_texts(texts: list[str], param: str, limits: Limits) -> None:
    if not texts:
        raise ApiError(400, f"'{param}' must not be empty", code="empty_input", param=param)
    if len(texts) > limits.max_inputs_per_request:
        raise ApiError(400, f"'{param}' has {len(texts)} items; at most {limits.max_inputs_per_request} are "
                       "allowed per request", code="too_many_inputs", param=param)
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"'{param}'[{i}] is empty", code="empty_input", param=param)
        if len(text) > limits.max_input_chars:
            raise ApiError(400, f"'{param}'[{i}] has {len(text)} characters; at most {limits.max_input_chars} "
                           "are allowed per input", code="input_too_long", param=param)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates ("\ud800") that JSON allows but no tokenizer takes
            raise ApiError(400, f"'{param}'[{i}] is not valid Unicode text", code="invalid_value",
                           param=param) from None


def _validate(model: type[_Request], payload: Any) -> Any:
    if not isinstance(payload, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_request")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        message, param = _validation_message(err)
        raise ApiError(400, message, code="invalid_value", param=param) from None


def parse_embeddings_request(payload: Any, limits: Limits) -> EmbeddingsRequest:
    """Validate a decoded JSON body as an embeddings request within `limits` (ApiError 400 if not)."""
    request = _validate(EmbeddingsRequest, payload)
    _check_texts(request.texts, "input", limits)
    return request


def parse_search_request(payload: Any, limits: Limits) -> SearchRequest:
    """Validate a decoded JSON body as a search request within `limits` (ApiError 400 if not)."""
    request = _validate(SearchRequest, payload)
    if (request.query is None) == (request.queries is None):
        raise ApiError(400, "give exactly one of 'query' (a string) or 'queries' (a list of strings)",
                       code="invalid_request", param="query")
    _check_texts(request.texts, "query" if request.query is not None else "queries", limits)
    if not 1 <= request.top_k <= limits.max_top_k:
        raise ApiError(400, f"'top_k' must be between 1 and {limits.max_top_k}, got {request.top_k}",
                       code="invalid_value", param="top_k")
    return request


def check_model(requested: str | None, served: set[str]) -> None:
    """A request naming a model this endpoint does not serve is a 404 (`model_not_found`)."""
    if requested is not None and requested not in served:
        raise ApiError(404, f"model {requested!r} is not served here; available: {', '.join(sorted(served))}",
                       code="model_not_found", param="model")
