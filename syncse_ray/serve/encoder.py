"""The sentence encoder behind the endpoint and the index: the project's sentence-transformers encoder
(`syncse_ray.models.encoders`), unit-length output and token counts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from syncse_ray.models.batching import plan_batches, run_batches
from syncse_ray.models.encoders import SentenceTransformerEncoder, encoder_precision
from syncse_ray.models.references import resolve_model
from syncse_ray.serve.responses import unit_float32
from syncse_ray.serve.tokens import TokenCounts, token_lengths


class SentenceEncoder(SentenceTransformerEncoder):
    """Any sentence-transformers folder or model reference (`resolve_model`). Vectors are float32 and unit
    length, so inner product is cosine similarity."""

    def __init__(self, model: str | Path, *, device: str = "cpu", cache_dir: Path | None = None,
                 precision: str = "auto"):
        self.path = resolve_model(model, cache_dir)
        super().__init__(str(model), self.path, batch_size=64, max_seq_length=None, device=device,
                         precision=encoder_precision(precision, device, self.path))
        self.passes = 0  # forward passes run by encode_in_batches

    def encode(self, sentences: Sequence[str], *, show_progress: bool = False,
               batch_size: int | None = None) -> np.ndarray:
        """Unit-length float32 rows, one a sentence (the `Encoder` interface; `batch_size`: sentences a forward
        pass, default 64)."""
        vectors = self.model.encode(list(sentences), batch_size=batch_size or self.batch_size,
                                    convert_to_numpy=True, show_progress_bar=show_progress)
        return unit_float32(vectors)

    def encode_in_batches(self, texts: list[str], *, max_batch_size: int, max_batch_tokens: int | None,
                          min_fill: float | None = None, lengths: list[int] | None = None) -> np.ndarray:
        """`encode`, one forward pass per batch of `plan_batches`: at most `max_batch_size` texts and
        `max_batch_tokens` padded tokens (longest × count, after truncation to max tokens) each, texts sorted by
        token length so padding is small; rows in the order of `texts`. `lengths`: token lengths before
        truncation (`count_tokens(texts).lengths`), when the caller has them."""
        if lengths is None:
            lengths = self.count_tokens(texts).lengths
        batches = plan_batches(lengths, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                               max_tokens=self.max_tokens, min_fill=min_fill)
        self.passes += len(batches)
        return run_batches(batches, lambda idx: self.encode([texts[i] for i in idx], batch_size=len(idx)),
                           len(texts))

    def count_tokens(self, texts: list[str]) -> TokenCounts:
        return TokenCounts(token_lengths(self.model.tokenizer, texts), self.max_tokens)
