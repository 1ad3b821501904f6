"""The sentence encoder behind the endpoint and the index: the project's sentence-transformers encoder
(`syncse_ray.encoders`), unit-length output and token counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syncse_ray.encoders import SentenceTransformerEncoder
from syncse_ray.models import resolve_model
from syncse_ray.serve.encoding import normalize
from syncse_ray.serve.tokens import TokenCounts, token_lengths


class SentenceEncoder(SentenceTransformerEncoder):
    """Any sentence-transformers folder or model reference (`resolve_model`). Vectors are float32 and unit
    length, so inner product is cosine similarity."""

    def __init__(self, model: str | Path, *, device: str = "cpu", cache_dir: Path | None = None):
        self.path = resolve_model(model, cache_dir)
        super().__init__(str(model), self.path, batch_size=64, max_seq_length=None, device=device)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return normalize(vectors)

    def count_tokens(self, texts: list[str]) -> TokenCounts:
        return TokenCounts(token_lengths(self.model.tokenizer, texts), self.max_tokens)
