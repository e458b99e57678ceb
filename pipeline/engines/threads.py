"""Running blocking engine code off the event loop, one engine at a time.

Model libraries (onnxruntime sessions, espeak-ng, CTranslate2, torch) are either not thread-safe
or already use every core they are given, so each engine owns a single-worker executor. A
synchronous generator (Piper yields a chunk per sentence, XTTS a chunk per 20 tokens) is walked
on that executor one item at a time, so each chunk reaches the caller as soon as it exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def engine_executor(name: str) -> ThreadPoolExecutor:
    """The private thread of one engine."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


def _next(it: Iterator[T]) -> T | object:
    return next(it, _DONE)


async def iterate_in(executor: Executor, make: Callable[[], Iterable[T]]) -> AsyncIterator[T]:
    """Yield the items of the iterable that `make()` returns, computing each on `executor`.

    Stopping early (barge-in) leaves the rest uncomputed: only the item in progress finishes.
    """
    loop = asyncio.get_running_loop()
    it: Iterator[T] = await loop.run_in_executor(executor, lambda: iter(make()))
    while True:
        item = await loop.run_in_executor(executor, _next, it)
        if item is _DONE:
            return
        yield item  # type: ignore[misc]
