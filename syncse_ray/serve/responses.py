"""Embedding vectors -> OpenAI response bodies: `dimensions` truncation, float lists or base64 float32."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from syncse_ray.models.vectors import unit_rows
from syncse_ray.serve.protocol import ApiError


def unit_float32(vectors: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows (what the endpoint returns); all-zero rows stay zero."""
    return unit_rows(np.asarray(vectors, dtype=np.float32))


def check_dimensions(dimensions: int | None, size: int) -> None:
    """Asking for more dimensions than the model's `size` is a 400."""
    if dimensions is not None and dimensions > size:
        raise ApiError(400, f"'dimensions' is {dimensions} but the model's embeddings have {size}",
                       code="invalid_value", param="dimensions")


def truncate_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components and re-normalize (Matryoshka-style); more is a 400."""
    size = vectors.shape[1]
    check_dimensions(dimensions, size)
    if dimensions is None or dimensions == size:
        return vectors
    return unit_float32(vectors[:, :dimensions])


def to_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what the OpenAI client decodes for encoding_format="base64"."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def from_base64(data: str) -> np.ndarray:
    """The inverse of `to_base64`."""
    return np.frombuffer(base64.b64decode(data), dtype="<f4")


def embeddings_response(vectors: np.ndarray, *, encoding_format: str, model: str,
                        prompt_tokens: int) -> dict[str, Any]:
    """The OpenAI embeddings response body."""
    if encoding_format == "base64":
        items = [to_base64(v) for v in vectors]
    else:
        items = np.asarray(vectors, dtype=np.float32).tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": item} for i, item in enumerate(items)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
