"""Liveness, readiness (database and Redis, for real), and the OpenAPI documents."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from tests.conftest import free_port, make_settings


def test_healthz_answers_ok(client: TestClient) -> None:
    """/healthz answers 200 without touching anything else."""
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_readyz_is_ready_with_the_database(client: TestClient) -> None:
    """/readyz checks the database (SQLite and PostgreSQL) and says ok; no Redis is configured."""
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_checks_redis_when_configured(tmp_path: Path, db_url: str, redis_url: str) -> None:
    """With a reachable Redis configured, /readyz reports it ok too."""
    with TestClient(create_app(make_settings(tmp_path, db_url, redis_url=redis_url))) as client:
        r = client.get("/readyz")
        assert r.status_code == 200
        assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_down(tmp_path: Path, db_url: str) -> None:
    """A Redis URL pointing at a closed port makes /readyz 503 while /healthz stays 200."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(make_settings(tmp_path, db_url, redis_url=dead))) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("error")
        assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_redis_accepts_but_never_answers(tmp_path: Path, db_url: str) -> None:
    """A Redis that accepts the connection and then stays silent turns /readyz red within seconds."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes handshakes; nobody ever reads or writes
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with TestClient(create_app(make_settings(tmp_path, db_url, redis_url=url))) as client:
            started = time.monotonic()
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["redis"] == "error: no answer in time"
            assert time.monotonic() - started < 10


def test_readyz_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    """A PostgreSQL URL pointing at a closed port makes /readyz 503 naming the database."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    settings = make_settings(tmp_path, url, migrate_on_start=False)
    with TestClient(create_app(settings)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["database"].startswith("error")


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    """/openapi.json lists the auth and profile routes, and /docs serves the Swagger page."""
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/auth/kakao",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/dev-login",
        "/v1/users/me",
    ):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
