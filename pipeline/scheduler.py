"""Fair turns on one shared engine (speech to text, text to speech) for every call of the server.

Whisper decodes one clip at a time on its own thread, and so does Piper speak, and every call of the
server shares them. Left to the thread's first-come queue, one caller's long decode (a five-minute
commit) held everyone else's transcript behind it, a partial transcript nobody waits for could
delay a final one that a caller does wait for, and under load the second sentence of one reply
(its first is still playing) was spoken before the first sentence of another, whose caller sat in
silence. So each decode, and each sentence spoken, first takes a turn here::

    async with EngineScheduler.of(stt).turn(Priority.NOW):
        transcript = await stt.transcribe(...)

At most `concurrency` turns run at once (an engine may say how many it serves at once with a
`concurrency` attribute; one otherwise); waiting `NOW` work goes before any waiting `SOON` work,
and otherwise first come, first served. Long audio is decoded in bounded windows, each taking its
own turn (`pipeline.stt_stream`), so other calls' decodes interleave with it.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


class Priority(enum.IntEnum):
    #: A caller is waiting in silence for it: a turn's final transcript, a reply's first sentence.
    NOW = 0
    #: Wanted, with time to spare: a partial transcript, a reply's later sentences (the one before
    #: is still playing).
    SOON = 1


class EngineScheduler:
    """Turns for one engine. Use from one event loop."""

    _by_engine: weakref.WeakKeyDictionary[Any, EngineScheduler] = weakref.WeakKeyDictionary()

    def __init__(self, concurrency: int = 1) -> None:
        self.concurrency = max(1, concurrency)
        self._running = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._loop = asyncio.get_running_loop()

    @classmethod
    def of(cls, engine: Any) -> EngineScheduler:
        """The scheduler every call on `engine` shares (one per engine and event loop)."""
        loop = asyncio.get_running_loop()
        try:
            scheduler = cls._by_engine.get(engine)
        except TypeError:  # an engine that cannot be weakly referenced gets a private one
            return cls(getattr(engine, "concurrency", 1))
        if scheduler is None or scheduler._loop is not loop:
            scheduler = cls._by_engine[engine] = cls(getattr(engine, "concurrency", 1))
        return scheduler

    @property
    def waiting(self) -> int:
        return sum(not f.done() for _, _, f in self._waiting)

    @classmethod
    def idle(cls, engine: Any) -> bool:
        """True when no call of this process is decoding on `engine` or waiting to (no loop needed)."""
        try:
            scheduler = cls._by_engine.get(engine)
        except TypeError:
            return True
        return scheduler is None or (scheduler._running == 0 and not scheduler.waiting)

    @asynccontextmanager
    async def turn(self, priority: Priority) -> AsyncIterator[None]:
        """Wait for a turn on the engine, hold it for the body, pass it on."""
        if self._running < self.concurrency and not self.waiting:
            self._running += 1
        else:
            granted: asyncio.Future[None] = self._loop.create_future()
            heapq.heappush(self._waiting, (int(priority), next(self._order), granted))
            try:
                await granted
            except asyncio.CancelledError:
                if granted.done() and not granted.cancelled():
                    self._pass_on()  # the turn came just as we were cancelled: hand it on
                raise
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():  # skip waiters cancelled meanwhile
                granted.set_result(None)  # the turn goes straight to them
                return
        self._running -= 1
