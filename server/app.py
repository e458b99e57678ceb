"""`create_app(settings)`: the whole service, wired explicitly from one settings object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server import UpstreamError, companion, generation, realtime
from server.middleware import MaxBodySizeMiddleware
from server.ratelimit import RateLimiter
from server.settings import Settings
from storage import db
from storage.media import LocalMediaStore, MediaStore

log = logging.getLogger("silvertalk")


@dataclass
class Services:
    """Everything a request or a call needs, built once per app in the lifespan."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    media: MediaStore
    http: httpx.AsyncClient
    rate_limiter: RateLimiter
    redis: Redis | None = None
    # Filled by the realtime and generation features at start-up.
    extras: dict[str, Any] = field(default_factory=dict)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            url = settings.resolved_database_url
            if settings.migrate_on_start:
                await asyncio.to_thread(db.migrate, url)
            engine = db.create_engine(url)
            stack.push_async_callback(engine.dispose)
            redis: Redis | None = None
            if settings.redis_url:
                redis = Redis.from_url(settings.redis_url)
                stack.push_async_callback(redis.aclose)
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=settings.kakao_timeout_s, follow_redirects=False, trust_env=False)
            )
            services = Services(
                settings=settings,
                engine=engine,
                sessions=db.session_factory(engine),
                media=LocalMediaStore(settings.media_dir),
                http=http,
                rate_limiter=RateLimiter(settings.rate_limit_per_minute, redis),
                redis=redis,
            )
            app.state.services = services
            # Features that own background work start here, in this order, and stop in reverse.
            await realtime.start(services, stack)
            await generation.start(services, stack)
            await companion.start(services, stack)
            yield

    app = FastAPI(title="Silvertalk", version="0.1.0", lifespan=lifespan)
    app.add_middleware(MaxBodySizeMiddleware, max_bytes=settings.max_upload_bytes + 64 * 1024)

    @app.exception_handler(UpstreamError)
    async def _upstream(_request: Any, exc: UpstreamError) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    from server.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app
