"""The HTTP API as a plain FastAPI app, without Ray: `create_api(backend)`.

The Serve ingress (`app.EmbeddingsAPI`) builds it on its replica (`__serve_build_asgi_app__`) over its own
state; tests build it over a stub backend and call it in-process, or read its OpenAPI document.

Every route's request and response body is a pydantic model in the OpenAPI schema (`/docs`, `/openapi.json`),
the request models carrying this server's limits. What FastAPI would do by itself differs in three ways, all
in `_OpenAIRoute`: the bearer key is checked before the body is read, the body is read under a streaming size
limit (413), and it is validated by `protocol.parse_*_request` (today's messages and codes, always a 400 in the
OpenAI error shape, never FastAPI's 422) before FastAPI sees it.
"""

# No `from __future__ import annotations`: the route signatures use the per-app request models (locals).

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from syncse_ray.config.serve import RequestLimits
from syncse_ray.serve.index import VectorIndex
from syncse_ray.serve.protocol import (
    TOKEN_ARRAYS_REFUSED,
    ApiError,
    EmbeddingsResponse,
    ErrorResponse,
    Health,
    ModelList,
    SearchResponse,
    check_model,
    documented_embeddings_request,
    documented_search_request,
    error_body,
    parse_embeddings_request,
    parse_json,
    parse_search_request,
    validation_message,
)
from syncse_ray.serve.responses import check_dimensions, embeddings_response, truncate_dimensions
from syncse_ray.serve.tokens import TokenCounts

logger = logging.getLogger("ray.serve")

TRUNCATED_HEADER = "x-syncse-truncated-inputs"
PUBLIC_PATHS = frozenset({"/healthz"})  # never need a key (nor do /docs and /openapi.json)

EmbedFn = Callable[[list[str]], Awaitable[tuple[np.ndarray, TokenCounts]]]


@dataclass
class ApiBackend:
    """What the routes need: the model's facts, the limits, the key, the index and an `embed` coroutine
    (unit vectors and token counts for any number of texts)."""

    embed: EmbedFn
    model_id: str
    served_names: set[str]
    dimension: int
    max_tokens: int
    limits: RequestLimits
    api_key: str | None = None
    index: VectorIndex | None = None
    created: int = field(default_factory=lambda: int(time.time()))


def authorize(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it is known to exceed `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    too_large = ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


class _ParsedRequest(Request):
    """The request with its body already read and decoded, declared as JSON for FastAPI's body parsing."""

    def __init__(self, request: Request, body: bytes, payload: Any):
        headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
        super().__init__({**request.scope, "headers": [*headers, (b"content-type", b"application/json")]},
                         request.receive)
        self._body_bytes, self._payload = body, payload

    async def body(self) -> bytes:
        return self._body_bytes

    async def json(self) -> Any:
        return self._payload


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    what = {400: "invalid JSON or an invalid body: limits, unknown fields, wrong types, token arrays "
                 "(`code`: invalid_json, invalid_request, invalid_value, empty_input, too_many_inputs, "
                 "input_too_long)",
            401: "missing or wrong bearer key (`code`: invalid_api_key)",
            404: "`model` not served here (`model_not_found`), or no corpus is indexed (`no_index`)",
            413: "the body is over the size limit (`code`: request_too_large)"}
    out: dict[int | str, dict[str, Any]] = {s: {"model": ErrorResponse, "description": what[s]} for s in statuses}
    # Documents any other client error (405 ...) and keeps FastAPI from adding a 422 this API never returns.
    out["4XX"] = {"model": ErrorResponse, "description": "any other client error, in the OpenAI error shape"}
    return out


_TRUNCATED = {"headers": {TRUNCATED_HEADER: {"description": "how many inputs were cut to the model's max tokens",
                                             "schema": {"type": "integer", "minimum": 0}}}}


def create_api(backend: ApiBackend) -> FastAPI:
    """The FastAPI app over `backend`; its OpenAPI document states `backend`'s limits."""
    limits = backend.limits
    served = sorted(backend.served_names)
    EmbeddingsBody = documented_embeddings_request(limits, backend.dimension, served)
    SearchBody = documented_search_request(limits, served)

    def check_embeddings(payload: Any) -> None:
        req = parse_embeddings_request(payload, limits)
        check_model(req.model, backend.served_names)
        check_dimensions(req.dimensions, backend.dimension)

    def check_search(payload: Any) -> None:
        req = parse_search_request(payload, limits)
        check_model(req.model, backend.served_names)

    gates: dict[str, Callable[[Any], None]] = {"/v1/embeddings": check_embeddings, "/v1/search": check_search}

    class _OpenAIRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()
            gate, public = gates.get(self.path), self.path in PUBLIC_PATHS

            async def route(request: Request) -> Response:
                if not public:
                    authorize(request, backend.api_key)
                if gate is not None:
                    body = await read_body(request, limits.max_body_bytes)
                    payload = parse_json(body)
                    gate(payload)
                    request = _ParsedRequest(request, body, payload)
                return await handler(request)

            return route

    bearer = [] if backend.api_key is None else [
        # Documents the scheme (the "Authorize" button in /docs); `_OpenAIRoute` enforces it.
        Depends(HTTPBearer(auto_error=False, description="the server's API key"))]
    api = FastAPI(title="syncse-ray embeddings", version="1",
                  description="OpenAI-compatible embeddings and nearest-neighbour search over a corpus. "
                              "Every error has the OpenAI shape `{\"error\": {message, type, param, code}}`. "
                              + TOKEN_ARRAYS_REFUSED)
    api.router.route_class = _OpenAIRoute

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only reached if the documented model were stricter than the gate: still a 400, never a 422.
        message, param = validation_message(exc.errors())
        return JSONResponse(error_body(message, type="invalid_request_error", code="invalid_value", param=param),
                            status_code=400)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), type="invalid_request_error", code=code),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @api.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", type="server_error"),
                            status_code=500)

    @api.post("/v1/embeddings", response_model=EmbeddingsResponse, dependencies=bearer,
              responses={200: _TRUNCATED, **_error_responses(400, 401, 404, 413)},
              summary="Embed texts (the OpenAI embeddings API)")
    async def embeddings(req: Annotated[EmbeddingsBody, Body()]) -> JSONResponse:  # type: ignore[valid-type]
        vectors, counts = await backend.embed(req.texts)
        body = embeddings_response(truncate_dimensions(vectors, req.dimensions),
                                   encoding_format=req.encoding_format, model=backend.model_id,
                                   prompt_tokens=counts.total)
        return JSONResponse(body, headers={TRUNCATED_HEADER: str(counts.truncated)})

    @api.post("/v1/search", response_model=SearchResponse, dependencies=bearer,
              responses={200: _TRUNCATED, **_error_responses(400, 401, 404, 413)},
              summary="Nearest corpus entries by cosine")
    async def search(req: Annotated[SearchBody, Body()]) -> JSONResponse:  # type: ignore[valid-type]
        if backend.index is None:
            raise ApiError(404, "no corpus is indexed here: start the server with a corpus or a saved index",
                           code="no_index")
        texts = req.texts
        vectors, counts = await backend.embed(texts)
        hits = await asyncio.to_thread(backend.index.search, vectors, req.top_k)
        data = [{"object": "search_result", "index": i, "query": text,
                 "results": [{"id": h.id, "text": h.text, "score": h.score} for h in row]}
                for i, (text, row) in enumerate(zip(texts, hits))]
        body = {"object": "list", "data": data, "model": backend.model_id,
                "usage": {"prompt_tokens": counts.total, "total_tokens": counts.total}}
        return JSONResponse(body, headers={TRUNCATED_HEADER: str(counts.truncated)})

    @api.get("/v1/models", response_model=ModelList, dependencies=bearer, responses=_error_responses(401),
             summary="The served model")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{
            "id": backend.model_id, "object": "model", "created": backend.created, "owned_by": "syncse-ray",
            "dimensions": backend.dimension, "max_tokens": backend.max_tokens,
            "index_size": len(backend.index) if backend.index is not None else 0,
        }]}

    @api.get("/healthz", response_model=Health, summary="Liveness; never needs a key")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return api
