"""Model batches by a token budget and a count: the plan (pure), the order restored, and the real MiniLM giving
the same vectors batched as one text at a time."""

from __future__ import annotations

import random

import numpy as np
import pytest

from syncse_ray.models.batching import effective_lengths, padded_tokens, plan_batches, run_batches


def _check(lengths, batches, *, max_batch_size, max_batch_tokens, max_tokens=None):
    sizes = effective_lengths(lengths, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each input exactly once
    for batch in batches:
        assert 1 <= len(batch) <= max_batch_size
        if max_batch_tokens is not None and padded_tokens([sizes[i] for i in batch]) > max_batch_tokens:
            assert len(batch) == 1  # over the budget only alone


def test_budget_and_count_are_respected_on_random_lengths():
    rng = random.Random(0)
    for _ in range(300):
        lengths = [rng.choice([rng.randint(1, 20), rng.randint(20, 600)]) for _ in range(rng.randint(0, 120))]
        size, budget = rng.randint(1, 70), rng.choice([None, 1, 50, 300, 1000, 16384])
        max_tokens = rng.choice([None, 256, 512])
        batches = plan_batches(lengths, max_batch_size=size, max_batch_tokens=budget, max_tokens=max_tokens)
        _check(lengths, batches, max_batch_size=size, max_batch_tokens=budget, max_tokens=max_tokens)


def test_sorted_longest_first_so_padding_is_small():
    lengths = [5, 200, 6, 190, 7, 180]
    batches = plan_batches(lengths, max_batch_size=2, max_batch_tokens=None)
    assert batches == [[1, 3], [5, 4], [2, 0]]  # the long ones together, the short ones together
    assert sum(padded_tokens([lengths[i] for i in b]) for b in batches) == 2 * 200 + 2 * 180 + 2 * 6


def test_token_budget_splits_and_long_inputs_run_alone():
    assert plan_batches([10] * 8, max_batch_size=64, max_batch_tokens=40) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # 300 tokens truncated to 256; alone it is over a budget of 200, so it runs alone
    assert plan_batches([300, 10, 10], max_batch_size=64, max_batch_tokens=200, max_tokens=256) == [[0], [1, 2]]
    assert plan_batches([300, 300], max_batch_size=64, max_batch_tokens=512, max_tokens=256) == [[0, 1]]
    assert plan_batches([300, 300], max_batch_size=64, max_batch_tokens=511, max_tokens=256) == [[0], [1]]
    assert plan_batches([], max_batch_size=4, max_batch_tokens=10) == []
    assert plan_batches([3] * 5, max_batch_size=2) == [[0, 1], [2, 3], [4]]  # no budget: the count only
    with pytest.raises(ValueError, match="max_batch_size must be at least 1, got 0"):
        plan_batches([1], max_batch_size=0)


def test_min_fill_bounds_the_padding_of_every_pass():
    rng = random.Random(2)
    for _ in range(300):
        lengths = [rng.choice([rng.randint(1, 30), rng.randint(30, 300)]) for _ in range(rng.randint(1, 100))]
        fill = rng.choice([0.3, 0.5, 0.8, 0.95, 1.0])
        batches = plan_batches(lengths, max_batch_size=64, max_batch_tokens=16384, max_tokens=256, min_fill=fill)
        _check(lengths, batches, max_batch_size=64, max_batch_tokens=16384, max_tokens=256)
        sizes = effective_lengths(lengths, 256)
        for batch in batches:
            real = sum(sizes[i] for i in batch)
            assert real >= fill * padded_tokens([sizes[i] for i in batch]) - 1e-9
    # one long input among short ones: without a fill it pads them all, with one it runs apart
    assert plan_batches([100, 10, 10, 10], max_batch_size=64) == [[0, 1, 2, 3]]
    assert plan_batches([100, 10, 10, 10], max_batch_size=64, min_fill=0.8) == [[0], [1, 2, 3]]
    assert plan_batches([50, 45, 40], max_batch_size=64, min_fill=0.8) == [[0, 1, 2]]  # 135 / 150 = 0.9
    with pytest.raises(ValueError, match="min_fill"):
        plan_batches([1], max_batch_size=1, min_fill=0)


def test_run_batches_restores_the_order_exactly():
    rng = random.Random(1)
    values = np.arange(97, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    lengths = [rng.randint(1, 300) for _ in range(97)]
    batches = plan_batches(lengths, max_batch_size=7, max_batch_tokens=500, max_tokens=256)
    assert batches != [list(range(97))]
    out = run_batches(batches, lambda idx: values[idx], 97)
    assert np.array_equal(out, values)
    with pytest.raises(ValueError, match="exactly once"):
        run_batches([[0, 1]], lambda idx: values[idx], 3)


@pytest.fixture(scope="module")
def encoder(minilm_path):
    from syncse_ray.serve.encoder import SentenceEncoder

    return SentenceEncoder(minilm_path)


def _mixed_texts(n: int = 50) -> list[str]:
    rng = random.Random(2)
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "river", "bank", "model", "sentence", "encoder",
             "learns", "from", "data", "quickly"]
    texts = []
    for i in range(n):
        count = rng.choice([rng.randint(1, 8), rng.randint(30, 90), rng.randint(300, 400)])  # some over 256 tokens
        texts.append(" ".join(rng.choice(words) for _ in range(count)) + f" {i}.")
    return texts


@pytest.mark.slow  # loads MiniLM and encodes 50 texts twice (~9 s)
def test_minilm_vectors_batched_by_tokens_equal_one_at_a_time(encoder, monkeypatch):
    texts = _mixed_texts()
    lengths = encoder.count_tokens(texts).lengths
    assert min(lengths) < 12 and max(lengths) > encoder.max_tokens  # short, long and truncated inputs
    alone = np.concatenate([encoder.encode([t], batch_size=1) for t in texts])

    seen: list[list[str]] = []
    plain_encode = encoder.encode

    def spy(batch, batch_size=64):
        seen.append(list(batch))
        return plain_encode(batch, batch_size=batch_size)

    monkeypatch.setattr(encoder, "encode", spy)
    budget, size = 1024, 16
    batched = encoder.encode_in_batches(texts, max_batch_size=size, max_batch_tokens=budget, lengths=lengths)
    assert batched.shape == alone.shape and batched.dtype == np.float32
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)  # order restored, padding changes nothing
    assert len(seen) > 1 and sum(map(len, seen)) == len(texts)
    index = {t: i for i, t in enumerate(texts)}
    for batch in seen:
        padded = padded_tokens(effective_lengths([lengths[index[t]] for t in batch], encoder.max_tokens))
        assert len(batch) <= size and (padded <= budget or len(batch) == 1)
