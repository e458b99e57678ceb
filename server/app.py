"""`create_app(settings)`: the whole service, wired explicitly from one settings object."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from server import UpstreamError, companion, generation, jobs, realtime
from server.middleware import (
    MaxBodySizeMiddleware,
    MetricsGuardMiddleware,
    SecurityHeadersMiddleware,
    UnicodeJsonMiddleware,
)
from server.ratelimit import AddressRateLimitMiddleware, RateLimiter
from server.services import Services
from server.settings import Settings
from storage import db
from storage.media import LocalMediaStore

log = logging.getLogger("silvertalk")


async def drain(app: FastAPI) -> None:
    """Stop taking calls and let the open ones end (on SIGTERM, before uvicorn's own shutdown).

    From now on `/readyz` answers 503, so the load balancer sends no one here, and a new call is
    refused with HTTP 503 before the upgrade. Each open call ends with close code 1012 (the client
    reconnects elsewhere) at its first quiet moment, or when `shutdown_grace_s` runs out; its
    finished turns are stored. Returns once no call is open (or shortly after the grace period).
    """
    services: Services | None = getattr(app.state, "services", None)
    if services is None:  # still starting: nothing to drain
        return
    services.draining = True
    log.info("draining: %d open calls", services.calls.count() if services.calls else 0)
    await realtime.drain(services)


async def open_services(settings: Settings, stack: AsyncExitStack) -> Services:
    """Database (migrated when `migrate_on_start`), Redis, media and HTTP client; closed by `stack`.

    The server's lifespan and each job worker process build their services here.
    """
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
        rate_limiter=RateLimiter(
            settings.rate_limit_per_minute, redis, f"{settings.redis_prefix}ratelimit:user:"
        ),
        redis=redis,
    )
    # Features that open clients lazily (the generation runner in a job worker) close them here.
    services.stack = stack
    return services


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            services = await open_services(settings, stack)
            app.state.services = services
            # Features that own background work start here, in this order, and stop in reverse.
            await realtime.start(services, stack)
            await generation.start(services, stack)
            await jobs.start(services, stack)
            await companion.start(services, stack)
            yield

    app = FastAPI(title="Silvertalk", version="0.1.0", lifespan=lifespan)
    # Added innermost first: the last one added sees the request first.
    app.add_middleware(UnicodeJsonMiddleware)
    app.add_middleware(MaxBodySizeMiddleware, max_bytes=settings.max_upload_bytes + 64 * 1024)
    app.add_middleware(
        AddressRateLimitMiddleware,
        login_per_minute=settings.login_rate_limit_per_minute,
        realtime_per_minute=settings.realtime_rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        prefix=f"{settings.redis_prefix}ratelimit:address:",
    )
    app.add_middleware(
        MetricsGuardMiddleware,
        token=settings.metrics_token,
        open_without_token=settings.environment != "production",
    )
    app.add_middleware(
        SecurityHeadersMiddleware, hsts=(settings.public_base_url or "").lower().startswith("https://")
    )
    # Outermost: a preflight is answered before anything else looks at it, and refusals made by
    # the middleware above still carry the CORS headers a browser needs to read them.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After"],
        max_age=600,
    )

    @app.exception_handler(UpstreamError)
    async def _upstream(_request: Any, exc: UpstreamError) -> Any:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Any, exc: RequestValidationError) -> Any:
        # FastAPI's own handler echoes the input in UTF-8, which fails (500) on text that is no
        # Unicode (a lone surrogate from a query or form); ASCII JSON escapes any input.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True).encode()
        return Response(body, status_code=422, media_type="application/json")

    from server.routers import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app
