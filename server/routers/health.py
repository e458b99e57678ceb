"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from server.deps import ServicesDep
from storage import db

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: ServicesDep, response: Response) -> dict[str, object]:
    """Ready: the database and, when configured, Redis answer."""
    checks: dict[str, str] = {}
    try:
        await db.ping(services.engine)
        checks["database"] = "ok"
    except Exception as e:  # report, don't crash: this endpoint exists to say what is down
        checks["database"] = f"error: {type(e).__name__}"
    if services.redis is not None:
        try:
            await services.redis.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if ok else "unavailable", "checks": checks}
