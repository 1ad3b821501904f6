"""The vector maths every stage shares, written once: unit-length rows and the row-wise cosine of two
[n, d] arrays (what the judge scores, what SentEval correlates, what /v1/embeddings returns). NumPy only."""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its length, in the array's own float dtype; an all-zero row stays zero."""
    vectors = np.asarray(vectors)
    if not np.issubdtype(vectors.dtype, np.floating):
        vectors = vectors.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(vectors.dtype).tiny)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity ``<a_i, b_i> / (|a_i| |b_i|)`` in the inputs' dtype (a zero row gives 0)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two [n, d] arrays of the same shape, got {a.shape} and {b.shape}")
    return (unit_rows(a) * unit_rows(b)).sum(axis=1)
