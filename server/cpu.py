"""Bounded slots for CPU-heavy request work: rule expansion and image decoding.

Such work runs in worker threads, never on the event loop. Unbounded, a handful of hostile
requests would take every thread of the loop's default executor (min(32, cores + 4): six on two
cores) and other users' requests would queue behind them. Each kind of work gets a small number
of slots per process; a request waits (without blocking the loop) for a free one.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# One semaphore per (event loop, kind): an app lives on one loop; tests build many apps and loops.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def slots(kind: str, size: int) -> asyncio.Semaphore:
    """The semaphore bounding `kind` work in this event loop to `size` at once."""
    per_loop = _slots.setdefault(asyncio.get_running_loop(), {})
    if kind not in per_loop:
        per_loop[kind] = asyncio.Semaphore(size)
    return per_loop[kind]


async def run(kind: str, size: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread once one of the `size` slots of `kind` is free."""
    async with slots(kind, size):
        return await asyncio.to_thread(fn, *args, **kwargs)
