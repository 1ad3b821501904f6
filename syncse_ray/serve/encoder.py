"""The sentence encoder behind the endpoint and the index: a sentence-transformers model, normalized output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syncse_ray.serve.encoding import normalize
from syncse_ray.serve.tokens import TokenCounts, token_lengths


class SentenceEncoder:
    """Loads any sentence-transformers folder or model reference (`resolve_model`) and embeds text.

    Vectors are float32 and unit length, so inner product is cosine similarity.
    """

    def __init__(self, model: str | Path, *, device: str = "cpu", cache_dir: Path | None = None):
        from sentence_transformers import SentenceTransformer

        from syncse_ray.models import resolve_model

        self.path = resolve_model(model, cache_dir)
        self.model = SentenceTransformer(str(self.path), device=device)
        self.model.eval()

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    show_progress_bar=False)
        return normalize(vectors)

    def count_tokens(self, texts: list[str]) -> TokenCounts:
        return TokenCounts(token_lengths(self.model.tokenizer, texts), self.max_tokens)
