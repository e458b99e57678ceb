"""The batch scheduler alone (no Ray, no model): finals first, groups merged, stale partials dropped."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from inference.batching import BatchScheduler, Job
from pipeline.engines.base import Transcript


class Decoder:
    """Records each batch it is given; the first batch holds the model until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, jobs: list[Job]) -> list[Transcript]:
        if not self.batches:
            self.release.wait(5)
        self.batches.append([str(j.prompt) for j in jobs])
        return [Transcript(text=f"heard {j.prompt}", language="en") for j in jobs]


def job(name: str, *, partial: bool = False, age_s: float = 0.0) -> Job:
    return Job(np.zeros(1600, np.int16), "en", name, partial, time.monotonic() - age_s)


async def test_finals_go_first_and_waiting_groups_merge_into_one_batch() -> None:
    """While a batch decodes, a partial then two finals arrive: the finals are next, together."""
    decoder = Decoder()
    scheduler = BatchScheduler(decoder, max_batch=8, stale_s=10.0)
    busy = asyncio.create_task(scheduler.submit([job("first")], final=True))
    await asyncio.sleep(0.05)
    partial = asyncio.create_task(scheduler.submit([job("p", partial=True)], final=False))
    finals = [asyncio.create_task(scheduler.submit([job(f"f{i}")], final=True)) for i in range(2)]
    await asyncio.sleep(0.05)
    decoder.release.set()
    results = await asyncio.gather(busy, partial, *finals)
    assert decoder.batches == [["first"], ["f0", "f1"], ["p"]]
    assert [r[0]["batch_size"] for r in results] == [1, 1, 2, 2]
    assert results[2][0]["text"] == "heard f0" and results[2][0]["queue_s"] >= 0.04


async def test_a_partial_that_waited_too_long_is_not_decoded() -> None:
    """A partial older than `stale_s` is answered stale without reaching the model; a final never is."""
    decoder = Decoder()
    decoder.release.set()
    scheduler = BatchScheduler(decoder, max_batch=8, stale_s=0.5)
    stale, fresh = await scheduler.submit(
        [job("old", partial=True, age_s=1.0), job("new", partial=True)], final=False
    )
    assert stale["stale"] and not fresh["stale"] and fresh["batch_size"] == 1
    (final,) = await scheduler.submit([job("late final", age_s=9.0)], final=True)
    assert not final["stale"] and decoder.batches == [["new"], ["late final"]]


async def test_a_failed_decode_reaches_every_caller_of_the_batch() -> None:
    """The decoder's exception is raised to each request of its batch; the next batch still runs."""
    calls = 0

    def flaky(jobs: list[Job]) -> list[Transcript]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("CUDA out of memory")
        return [Transcript(text="ok", language="en") for _ in jobs]

    scheduler = BatchScheduler(flaky, max_batch=8, stale_s=1.0)
    first = await asyncio.gather(scheduler.submit([job("a"), job("b")], final=True), return_exceptions=True)
    assert isinstance(first[0], RuntimeError)
    assert (await scheduler.submit([job("c")], final=True))[0]["text"] == "ok"
