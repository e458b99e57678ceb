"""The realtime WebSocket gateway (OpenAI Realtime protocol) at /v1/realtime.

Modules: `protocol` (client events in, parsed and checked), `session` (the session, beta and GA
shapes), `encoder` (server events out), `gateway` (the route: socket <-> core), `calls` (open calls
per user, `push` for other features), `store` (conversations and turns), `metrics` (Prometheus).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from server.realtime.calls import CallRegistry
from server.realtime.metrics import CallMetrics

if TYPE_CHECKING:
    from server.services import Services


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Create the call registry and metrics; load the speech engines now when `preload_engines`.

    A missing model fails the start with the engine's message (EngineUnavailable). Without
    preloading, the first call loads them.
    """
    settings = services.settings
    services.calls = CallRegistry(settings.realtime_max_calls_per_user)
    services.metrics = CallMetrics()
    if settings.preload_engines:
        from pipeline.engines.registry import load_engines

        engines = await asyncio.to_thread(load_engines, settings)
        services.engines = engines
        stack.push_async_callback(engines.aclose)
