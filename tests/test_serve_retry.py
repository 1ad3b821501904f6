"""The resend policy for calls whose Embedder replica died (`syncse_ray.serve.retry`), without Ray."""

from __future__ import annotations

import asyncio

import pytest

from syncse_ray.serve.retry import call_with_retries


class ReplicaGone(Exception):
    pass


def _flaky(failures: int, exc: type[BaseException] = ReplicaGone):
    calls = []

    async def call():
        calls.append(len(calls))
        if len(calls) <= failures:
            raise exc(f"replica died on call {len(calls)}")
        return "vectors"

    return call, calls


def _run(call, **kwargs):
    return asyncio.run(call_with_retries(call, retryable=(ReplicaGone,), backoff_s=0.0, **kwargs))


def test_resent_until_it_succeeds_and_each_resend_is_reported():
    call, calls = _flaky(2)
    seen = []
    assert _run(call, retries=3, on_retry=lambda attempt, exc: seen.append((attempt, str(exc)))) == "vectors"
    assert len(calls) == 3 and seen == [(1, "replica died on call 1"), (2, "replica died on call 2")]


def test_the_last_failure_is_raised_once_retries_are_spent():
    call, calls = _flaky(5)
    with pytest.raises(ReplicaGone, match="^replica died on call 3$"):  # the last one, not an earlier one
        _run(call, retries=2)
    assert len(calls) == 3


def test_other_errors_are_not_resent():
    call, calls = _flaky(1, ValueError)
    with pytest.raises(ValueError, match="^replica died on call 1$"):
        _run(call, retries=3)
    assert len(calls) == 1


def test_zero_retries_is_one_try_and_negative_is_refused():
    call, calls = _flaky(1)
    with pytest.raises(ReplicaGone, match="^replica died on call 1$"):
        _run(call, retries=0)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="retries"):
        _run(call, retries=-1)


def test_backoff_doubles(monkeypatch):
    waits = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    call, _ = _flaky(3)
    assert asyncio.run(call_with_retries(call, retryable=(ReplicaGone,), retries=3, backoff_s=0.5)) == "vectors"
    assert waits == [0.5, 1.0, 2.0]
