"""The realtime WebSocket gateway (OpenAI Realtime protocol) at /v1/realtime.

Modules: `protocol` (client events in, parsed and checked), `session` (the session, beta and GA
shapes), `encoder` (server events out), `gateway` (the route: socket <-> core), `calls` (open calls
per user across processes, `push` for other features, draining), `store` (conversations and
turns), `metrics` (Prometheus).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from server.realtime.calls import CallRegistry
from server.realtime.metrics import CallMetrics

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("silvertalk.realtime")


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Create the call registry and metrics; load the speech engines now when `preload_engines`.

    With Redis the registry shares the per-user limit and pushes with the other gateway processes
    (its heartbeat and subscription run until the stack unwinds). A missing model fails the start
    with the engine's message (EngineUnavailable). Without preloading, the first call loads them.
    """
    settings = services.settings
    services.calls = await stack.enter_async_context(
        CallRegistry(
            settings.realtime_max_calls_per_user,
            services.redis,
            prefix=settings.redis_prefix,
            lease_s=settings.realtime_call_lease_s,
        )
    )
    services.metrics = CallMetrics()
    if settings.preload_engines:
        from pipeline.engines.registry import load_engines

        engines = await asyncio.to_thread(load_engines, settings)
        services.engines = engines
        stack.push_async_callback(engines.aclose)
        took = await asyncio.to_thread(engines.warm_up)
        log.info("engines warmed up: %s", ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in took.items()))


async def drain(services: Services) -> None:
    """End every open call within `shutdown_grace_s` (close code 1012); returns once they have gone."""
    calls = services.calls
    if calls is None:  # the realtime feature never started
        return
    await calls.drain(services.settings.shutdown_grace_s)
