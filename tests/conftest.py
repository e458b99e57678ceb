"""Shared fixtures: real databases (SQLite and PostgreSQL), real Redis, the app, a live server.

With CI=true a test that needs PostgreSQL or Redis fails when they are unreachable; locally it
skips with the command that starts them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_sync
import uvicorn
from fastapi.testclient import TestClient

from server.__main__ import uvicorn_options
from server.app import create_app
from server.settings import Settings
from storage import db

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
PG_ADMIN_DSN = os.environ.get("SILVERTALK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SILVERTALK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


def unavailable(what: str, how: str) -> None:
    """Fail under CI (the service must be there), skip locally with how to start it."""
    if IN_CI:
        pytest.fail(f"{what} is unreachable and CI=true: {how}")
    pytest.skip(f"{what} is unreachable; start it with: {how}")


# --- PostgreSQL: migrate a template once, then give each test its own copy -------------------

_PG_TEMPLATE = f"silvertalk_tpl_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    try:
        conn = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        unavailable(
            "PostgreSQL at 127.0.0.1:5432",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        )
    with conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_PG_TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{_PG_TEMPLATE}"')
    db.migrate(_pg_url(_PG_TEMPLATE))
    yield _PG_TEMPLATE
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_PG_TEMPLATE}" WITH (FORCE)')


def _pg_url(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg://{base}/{name}"


@pytest.fixture
def postgres_url(pg_template: str) -> Iterator[str]:
    name = f"silvertalk_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each API test runs on both databases."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis_sync.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis_sync.RedisError:
        unavailable(
            "Redis at 127.0.0.1:6379",
            'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
        )
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# --- the app ---------------------------------------------------------------------------------


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "redis_url": None,
        "dev_login": True,
        "jwt_secret": "test-secret-" + "x" * 32,
        "preload_engines": False,
        "llm_engine": "offline",
        "rate_limit_per_minute": 10_000,
        "login_rate_limit_per_minute": 10_000,
        "realtime_rate_limit_per_minute": 10_000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


def dev_login(client: Any, name: str = "kim") -> dict[str, str]:
    """Log in through the dev login and return the Authorization header."""
    r = client.post("/v1/auth/dev-login", json={"name": name})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return dev_login(client, "kim")


# --- a live uvicorn server on 127.0.0.1:<free port> -----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn in a thread, for clients that need a real socket (openai SDK, CLI, browser).

    The listening socket is bound here and handed to uvicorn, so no other process can take the
    port between choosing it and serving on it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        options = uvicorn_options(settings) | {"timeout_graceful_shutdown": 2}
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **options,
        )
        self.server = uvicorn.Server(config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as e:  # surfaced by __enter__ with the real cause
            self.error = e

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"live server did not start (error: {self.error!r}; the app's start-up log is above)"
                ) from self.error
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
