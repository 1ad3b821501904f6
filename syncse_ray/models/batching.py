"""Length-sorted batching, the one implementation: inputs sorted by length so a batch pads little, results put
back in input order (`run_batches`). Two plans: `sorted_batches` (a fixed count a batch, shortest first: the
evaluation encoder and the training model's dev encoding) and `plan_batches` (serving: a token budget as well as a
count, as text-embeddings-inference's `--max-batch-tokens` does).

A batch is padded to its longest input, so what it costs is `longest × count` tokens (after truncation to the
model's max tokens). The inputs of a call are sorted by length, longest first, and cut into consecutive batches
of at most `max_batch_size` inputs whose padded size stays within `max_batch_tokens`; an input that alone is over
the budget runs alone. Sorting keeps padding small (neighbours have similar lengths); `run_batches` puts the
results back in the original order. Pure: no Ray, no torch.

    batches = plan_batches(lengths, max_batch_size=64, max_batch_tokens=16384, max_tokens=256)
    vectors = run_batches(batches, lambda idx: model.encode([texts[i] for i in idx]), len(texts))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def effective_lengths(lengths: Sequence[int], max_tokens: int | None) -> list[int]:
    """Tokens each input is padded from: its length, cut to the model's max tokens (at least 1)."""
    return [max(1, min(n, max_tokens) if max_tokens else n) for n in lengths]


def padded_tokens(lengths: Sequence[int]) -> int:
    """What one batch of inputs of these (effective) lengths costs once padded: longest × count."""
    return max(lengths, default=0) * len(lengths)


def plan_batches(lengths: Sequence[int], *, max_batch_size: int, max_batch_tokens: int | None = None,
                 max_tokens: int | None = None, min_fill: float | None = None) -> list[list[int]]:
    """Input indices grouped into model batches: longest first, each batch at most `max_batch_size` inputs,
    (when `max_batch_tokens` is set) at most `max_batch_tokens` padded tokens, unless a single input alone is
    longer (then it is alone), and (when `min_fill` is set) at least that share of real tokens among its padded
    ones, so padding is at most `1 / min_fill - 1` of the tokens embedded. Every index appears exactly once."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
    if min_fill is not None and not 0 < min_fill <= 1:
        raise ValueError(f"min_fill must be in (0, 1], got {min_fill}")
    sizes = effective_lengths(lengths, max_tokens)
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))  # longest first, ties in input order
    batches: list[list[int]] = []
    current: list[int] = []
    longest = real = 0  # the first (longest) input of the current batch pads the rest; real: its tokens
    for i in order:
        padded = longest * (len(current) + 1)  # the batch's cost with input i in it
        full = (len(current) >= max_batch_size
                or (max_batch_tokens is not None and padded > max_batch_tokens)
                or (min_fill is not None and real + sizes[i] < min_fill * padded))
        if current and full:
            batches.append(current)
            current, real = [], 0
        if not current:
            longest = sizes[i]
        current.append(i)
        real += sizes[i]
    if current:
        batches.append(current)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Input indices sorted by length, shortest first (ties in input order), cut into batches of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def run_batches(batches: Sequence[Sequence[int]], encode: Callable[[list[int]], np.ndarray],
                count: int) -> np.ndarray:
    """`encode(indices)` for each batch (rows in the order of `indices`), gathered back into input order:
    row `i` of the result is input `i`'s."""
    if sorted(i for batch in batches for i in batch) != list(range(count)):
        raise ValueError(f"the batches do not cover inputs 0..{count - 1} exactly once")
    out: np.ndarray | None = None
    for batch in batches:
        rows = np.asarray(encode(list(batch)))
        if len(rows) != len(batch):
            raise ValueError(f"encode returned {len(rows)} rows for a batch of {len(batch)}")
        if out is None:
            out = np.empty((count, *rows.shape[1:]), dtype=rows.dtype)
        out[list(batch)] = rows
    if out is None:
        return np.empty((0, 0), dtype=np.float32)
    return out
