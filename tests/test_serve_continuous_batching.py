"""The continuous batcher (pure asyncio): batches taken when the model is free, everything queued up to the size
limit, results to their callers, errors to the callers of that batch only, cancelled calls left out."""

from __future__ import annotations

import asyncio

import pytest

from syncse_ray.serve.continuous_batching import ContinuousBatcher


class Model:
    """A fake model that records the batches it ran and can be held until released."""

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[list[str]]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_on = fail_on

    async def run(self, chunks: list[list[str]]) -> list[str]:
        self.batches.append(chunks)
        await self.release.wait()
        if self.fail_on is not None and any(self.fail_on in chunk for chunk in chunks):
            raise ValueError(f"bad input {self.fail_on}")
        return ["+".join(chunk) for chunk in chunks]


def test_calls_queued_while_the_model_runs_all_go_in_the_next_batch():
    """What Ray Serve's @serve.batch does not do: it seals the next batch while the previous one runs."""

    async def scenario():
        model = Model()
        batcher = ContinuousBatcher(model.run, max_batch_size=6, batch_wait_timeout_s=0.0)
        model.release.clear()
        first = asyncio.create_task(batcher.submit(["a", "b"]))
        await asyncio.sleep(0.01)  # the first batch is running, held
        later = []
        for n in range(4):  # arrive one by one, long after a @serve.batch timeout would have sealed a batch
            later.append(asyncio.create_task(batcher.submit([f"x{n}"])))
            await asyncio.sleep(0.02)
        model.release.set()
        results = await asyncio.gather(first, *later)
        return model.batches, results, (batcher.calls, batcher.batches)

    batches, results, stats = asyncio.run(scenario())
    assert batches == [[["a", "b"]], [["x0"], ["x1"], ["x2"], ["x3"]]]
    assert results == ["a+b", "x0", "x1", "x2", "x3"]
    assert stats == (5, 2)


def test_size_limit_order_and_an_oversized_chunk_alone():
    async def scenario():
        model = Model()
        batcher = ContinuousBatcher(model.run, max_batch_size=4, batch_wait_timeout_s=0.05)
        chunks = [["a"], ["b", "c"], ["d", "e"], ["f", "g", "h", "i", "j"], ["k"]]
        results = await asyncio.gather(*(batcher.submit(chunk) for chunk in chunks))
        return model.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [[["a"], ["b", "c"]], [["d", "e"]], [["f", "g", "h", "i", "j"]], [["k"]]]
    assert results == ["a", "b+c", "d+e", "f+g+h+i+j", "k"]


def test_an_idle_model_waits_for_calls_to_join_unless_the_batch_is_full():
    async def scenario(wait: float, size: int):
        model = Model()
        batcher = ContinuousBatcher(model.run, max_batch_size=size, batch_wait_timeout_s=wait)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit(["b"]))
        await asyncio.gather(first, second)
        return model.batches

    assert asyncio.run(scenario(wait=0.5, size=8)) == [[["a"], ["b"]]]  # waited for b
    assert asyncio.run(scenario(wait=0.0, size=8)) == [[["a"]], [["b"]]]  # did not wait
    assert asyncio.run(scenario(wait=0.5, size=1)) == [[["a"]], [["b"]]]  # full: went at once


def test_an_error_reaches_the_callers_of_its_batch_only_and_the_batcher_goes_on():
    async def scenario():
        model = Model(fail_on="bad")
        batcher = ContinuousBatcher(model.run, max_batch_size=2, batch_wait_timeout_s=0.05)
        outcomes = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["ok"]), batcher.submit(["fine"]),
                                        return_exceptions=True)
        again = await batcher.submit(["after"])
        return outcomes, again

    outcomes, again = asyncio.run(scenario())
    assert [type(o) for o in outcomes[:2]] == [ValueError, ValueError]  # the same batch
    assert outcomes[2] == "fine" and again == "after"


def test_a_call_cancelled_while_queued_is_not_run():
    async def scenario():
        model = Model()
        batcher = ContinuousBatcher(model.run, max_batch_size=8, batch_wait_timeout_s=0.0)
        model.release.clear()
        running = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.submit(["gone"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        model.release.set()
        return model.batches, await running, await kept

    batches, a, kept = asyncio.run(scenario())
    assert batches == [[["a"]], [["kept"]]] and (a, kept) == ("a", "kept")


def test_wrong_result_count_and_bad_settings_are_errors():
    async def short(chunks):
        return []

    async def scenario():
        return await ContinuousBatcher(short, max_batch_size=2).submit(["a"])

    with pytest.raises(RuntimeError, match="0 results for 1 calls"):
        asyncio.run(scenario())
    with pytest.raises(ValueError, match="max_batch_size"):
        ContinuousBatcher(short, max_batch_size=0)
    with pytest.raises(ValueError, match="batch_wait_timeout_s"):
        ContinuousBatcher(short, max_batch_size=1, batch_wait_timeout_s=-1)
