"""Liveness and readiness probes.

`/readyz` bounds each check in time: a Redis or database that accepts the connection but never
answers must turn the probe red, not hang it (orchestrators would only see a timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Response, status

from server.deps import ServicesDep
from storage import db

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep, response: Response) -> dict[str, object]:
    """Ready: not draining, and the database and, when configured, Redis answer within 2 s each.

    Else 503. A draining process (after SIGTERM) answers 503 at once, without checks.
    """
    if services.draining:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "draining", "checks": {}}
    checks = {"database": await _check(db.ping(services.engine))}
    if services.redis is not None:
        checks["redis"] = await _check(services.redis.ping())
    ok = all(v == "ok" for v in checks.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if ok else "unavailable", "checks": checks}


async def _check(probe: Awaitable[object]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await probe
    except TimeoutError:
        return "error: no answer in time"
    except Exception as e:  # report, don't crash: this endpoint exists to say what is down
        return f"error: {type(e).__name__}"
    return "ok"
