"""Request models, limits and the OpenAI error shape for the embeddings and search endpoints. No Ray here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
)

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


TOKEN_ARRAYS_REFUSED = (
    "Token-id arrays (OpenAI's `list[int]` / `list[list[int]]`) are refused with a 400 `invalid_value`: OpenAI "
    "clients that send them (e.g. LangChain's OpenAIEmbeddings) encode with tiktoken, whose ids mean nothing in "
    "this model's vocabulary, so accepting them would return wrong vectors without an error. Send text.")


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON Schema "integer" includes 1.0: accept integral numbers, refuse 2.5, "8" and booleans.
WholeNumber = Annotated[StrictInt, BeforeValidator(_integral)]


def _whole_number(low: int, high: int) -> Any:
    # The bounds before the validator, or pydantic writes them as `ge`/`le` instead of minimum/maximum.
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_integral)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EmbeddingsRequest(_Request):
    """The OpenAI embeddings request. Token-array inputs (lists of ints) are not supported."""

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: WholeNumber | None = Field(None, gt=0)
    user: StrictStr | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class SearchRequest(_Request):
    """Nearest corpus entries for one `query` or a list of `queries`."""

    query: StrictStr | None = None
    queries: list[StrictStr] | None = None
    top_k: WholeNumber = 10
    model: StrictStr | None = None

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


# The documented request bodies: the same fields with this server's limits (characters per input, inputs per
# request, top_k, the model's dimensions, the served model ids) written into the JSON Schema, so that a body the
# schema accepts is one the server accepts. `parse_*_request` stays the gate (its messages and codes); FastAPI
# revalidates its output against these models.

def _texts_types(limits: RequestLimits) -> tuple[Any, Any]:
    text = Annotated[StrictStr, Field(min_length=1, max_length=limits.max_input_chars)]
    return text, Annotated[list[text], Field(min_length=1, max_length=limits.max_inputs_per_request)]


def _model_type(served: Sequence[str]) -> Any:
    return Literal[tuple(sorted(served))] | None  # type: ignore[valid-type]


def documented_embeddings_request(limits: RequestLimits, dimension: int,
                                  served: Sequence[str]) -> type[EmbeddingsRequest]:
    text, texts = _texts_types(limits)
    return create_model(
        "EmbeddingsRequest", __base__=EmbeddingsRequest, __doc__=(
            "The OpenAI embeddings request. " + TOKEN_ARRAYS_REFUSED),
        input=(text | texts, Field(description=(
            f"A string or a list of 1..{limits.max_inputs_per_request} non-empty strings of at most "
            f"{limits.max_input_chars} characters each. " + TOKEN_ARRAYS_REFUSED))),
        model=(_model_type(served), Field(None, description="A served model id (see /v1/models); optional.")),
        dimensions=(_whole_number(1, dimension) | None, Field(None, description=(
            "Keep the first `dimensions` components and re-normalize (Matryoshka style)."))),
    )


_ONE_OF_QUERY = {"oneOf": [{"required": ["query"], "properties": {"query": {"type": "string"}}},
                           {"required": ["queries"], "properties": {"queries": {"type": "array"}}}]}


class _OneQueryField(SearchRequest):
    model_config = ConfigDict(json_schema_extra=_ONE_OF_QUERY)  # merged with _Request's config


def default_top_k(limits: RequestLimits) -> int:
    return min(SearchRequest.model_fields["top_k"].default, limits.max_top_k)


def documented_search_request(limits: RequestLimits, served: Sequence[str]) -> type[SearchRequest]:
    text, texts = _texts_types(limits)
    return create_model(
        "SearchRequest", __base__=_OneQueryField,
        __doc__="Nearest corpus entries for exactly one of `query` (a string) or `queries` (a list of strings).",
        query=(text | None, Field(None, description="One query.")),
        queries=(texts | None, Field(None, description="Several queries.")),
        top_k=(_whole_number(1, limits.max_top_k), Field(default_top_k(limits), description="Entries per query.")),
        model=(_model_type(served), Field(None, description="A served model id (see /v1/models); optional.")),
    )


# --- responses -----------------------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, or `server_error` for a 5xx")
    param: str | None = Field(description="the offending field, when there is one")
    code: str | None = Field(description="a stable machine-readable code, e.g. `empty_input`, `invalid_api_key`")


class ErrorResponse(BaseModel):
    """Every error, in the OpenAI shape."""

    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int = Field(ge=0, description="tokens embedded, special tokens included, after truncation")
    total_tokens: int = Field(ge=0)


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int = Field(ge=0)
    embedding: list[float] | str = Field(description=(
        "unit-length floats, or with encoding_format=base64 the little-endian float32 bytes in base64"))


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class SearchHit(BaseModel):
    id: str
    text: str
    score: float = Field(description="cosine similarity")


class SearchResult(BaseModel):
    object: Literal["search_result"]
    index: int = Field(ge=0)
    query: str
    results: list[SearchHit]


class SearchResponse(BaseModel):
    object: Literal["list"]
    data: list[SearchResult]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    dimensions: int
    max_tokens: int
    index_size: int = Field(ge=0, description="corpus entries searchable through /v1/search")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]


def parse_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON is a 400."""
    if not body:
        raise ApiError(400, "the request body is empty; expected a JSON object", code="invalid_json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON or encoding, absurd numbers, absurd nesting
        raise ApiError(400, f"the request body is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}",
                       code="invalid_json") from None


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One OpenAI-style message and `param` for pydantic errors (FastAPI's carry a leading "body")."""
    # A union (`str | list[str]`) reports one error per branch: the deepest one names the offending item.
    first = max(errors, key=lambda e: len(e["loc"]))
    parts = list(first["loc"])[1:] if first["loc"] and first["loc"][0] == "body" else list(first["loc"])
    if not parts and first["type"] in ("model_attributes_type", "dict_type", "model_type"):
        return "the request body must be a JSON object", None
    loc = ".".join(str(p) for p in parts if not str(p).startswith(("str", "list[", "constrained-str",
                                                                     "function-", "literal[")))
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
        message, param = validation_message(err.errors())
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
    if "top_k" not in request.model_fields_set:  # the default, within this server's max_top_k
        request.top_k = default_top_k(limits)
    if not 1 <= request.top_k <= limits.max_top_k:
        raise ApiError(400, f"'top_k' must be between 1 and {limits.max_top_k}, got {request.top_k}",
                       code="invalid_value", param="top_k")
    return request


def check_model(requested: str | None, served: set[str]) -> None:
    """A request naming a model this endpoint does not serve is a 404 (`model_not_found`)."""
    if requested is not None and requested not in served:
        raise ApiError(404, f"model {requested!r} is not served here; available: {', '.join(sorted(served))}",
                       code="model_not_found", param="model")
