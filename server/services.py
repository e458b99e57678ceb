"""`Services`: everything a request or a call needs, built once per app in the lifespan.

The app builds the shared parts (database, media, HTTP client, rate limiter, Redis); each feature
fills its own fields when it starts (`server.realtime.start`: `calls`, `metrics`, and `engines` when
preloaded; `server.generation.start`: `generation`; `server.companion.start`: `alerts`,
`summaries`). A field still None means that feature is not running in this app (a REST-only
test, say).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.ratelimit import RateLimiter
from server.settings import Settings
from storage.media import MediaStore

if TYPE_CHECKING:
    from pipeline.engines.registry import Engines
    from server.companion.alerts import AlertSender
    from server.companion.summary import SummaryQueue
    from server.generation.worker import GenerationRunner
    from server.jobs import Jobs
    from server.jobs.push import Pages
    from server.realtime.calls import CallRegistry
    from server.realtime.metrics import CallMetrics


@dataclass
class Services:
    """The app's shared resources and the handles of its running features."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    media: MediaStore
    http: httpx.AsyncClient
    rate_limiter: RateLimiter
    redis: Redis | None = None
    #: True from SIGTERM on: /readyz answers 503 and new calls are refused (`server.app.drain`).
    draining: bool = False
    #: Open realtime calls per user, and the calls' Prometheus metrics (server.realtime).
    calls: CallRegistry | None = None
    metrics: CallMetrics | None = None
    #: The speech engines: loaded at start (`preload_engines`) or by the first call.
    engines: Engines | None = None
    engines_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The image and video generation runner (server.generation; its work runs as jobs).
    generation: GenerationRunner | None = None
    #: The job sender: Dramatiq over Redis, or inline in this process without Redis (server.jobs).
    jobs: Jobs | None = None
    #: The voice-message pages open in this process, by user (server.jobs.push).
    pages: Pages | None = None
    #: Closes the app's resources; features that open clients lazily register them here.
    stack: AsyncExitStack | None = None
    #: Emergency alerts to the caregiver, and summaries after calls (server.companion).
    alerts: AlertSender | None = None
    summaries: SummaryQueue | None = None

    async def get_engines(self) -> Engines:
        """The loaded engines; the first caller loads them (in a thread) when they were not preloaded.

        Raises EngineUnavailable when a model or package is missing.
        """
        if self.engines is not None:
            return self.engines
        async with self.engines_lock:
            if self.engines is None:
                from pipeline.engines.registry import load_engines

                self.engines = await asyncio.to_thread(load_engines, self.settings)
        return self.engines
