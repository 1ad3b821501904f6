"""Resending a call whose replica died, so a replica death costs no failed request.

Embedding is idempotent: the same texts give the same vectors on any replica, so a call that was in flight on
an Embedder replica when it died (Ray raises `ActorDiedError`, or `ActorUnavailableError` while the death is not
yet known) can be sent again. Serve's router stops routing to a replica once a call to it raised
`ActorDiedError`, so the resent call goes to a live replica, or waits for the one Serve starts in its place.
Pure asyncio: the caller names which exceptions mean "the replica is gone".

    vectors = await call_with_retries(lambda: handle.embed.remote(chunk), retryable=(RayActorError,),
                                      retries=3, backoff_s=0.2)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def call_with_retries(call: Callable[[], Awaitable[T]], *, retryable: tuple[type[BaseException], ...],
                            retries: int, backoff_s: float,
                            on_retry: Callable[[int, BaseException], None] | None = None) -> T:
    """`await call()`, sent again up to `retries` times when it raises one of `retryable` (waiting
    `backoff_s × 2^(attempt-1)` between tries, so a replacement replica has time to start). Any other exception,
    or the last retryable one, is raised as it is. `on_retry(attempt, exc)` runs before each resend."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    attempt = 0
    while True:
        try:
            return await call()
        except retryable as exc:
            attempt += 1
            if attempt > retries:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
