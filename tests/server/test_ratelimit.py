"""Per-user rate limiting: in-process and in a real Redis, 429 with Retry-After."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_sync
from fastapi import HTTPException
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from server.app import create_app
from server.ratelimit import RateLimiter
from tests.conftest import dev_login, make_settings


def fresh_window() -> None:
    """The limiter counts per wall-clock minute: don't start a test in its last seconds."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.05)


def assert_limited(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get("/v1/users/me", headers=headers)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "slow down" in r.json()["detail"]


def test_in_process_limit_answers_429_per_user(tmp_path: Path, db_url: str) -> None:
    """Without Redis, the fourth request in a minute at 3/min is 429; another user is unaffected."""
    with TestClient(create_app(make_settings(tmp_path, db_url, rate_limit_per_minute=3))) as client:
        kim, lee = dev_login(client, "kim"), dev_login(client, "lee")
        fresh_window()
        for _ in range(3):
            assert client.get("/v1/users/me", headers=kim).status_code == 200
        assert_limited(client, kim)
        assert client.get("/v1/users/me", headers=lee).status_code == 200
        # Unauthenticated probes are not counted against anyone.
        assert client.get("/healthz").status_code == 200


def test_redis_limit_is_shared_between_server_processes(tmp_path: Path, db_url: str, redis_url: str) -> None:
    """Two app instances on one Redis share each user's budget, and the count lives in Redis."""
    settings = make_settings(tmp_path, db_url, redis_url=redis_url, rate_limit_per_minute=3)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        login = one.post("/v1/auth/dev-login", json={"name": "kim"}).json()
        kim = {"Authorization": f"Bearer {login['access_token']}"}
        fresh_window()
        window = int(time.time() // 60)
        assert one.get("/v1/users/me", headers=kim).status_code == 200
        assert two.get("/v1/users/me", headers=kim).status_code == 200
        assert one.get("/v1/users/me", headers=kim).status_code == 200
        assert_limited(two, kim)
        lee = dev_login(two, "lee")  # a second user still has their own budget
        assert two.get("/v1/users/me", headers=lee).status_code == 200
    r = redis_sync.Redis.from_url(redis_url)
    try:
        key = f"silvertalk:ratelimit:user:{login['user']['id']}:{window}"
        assert r.get(key) == b"4"
        assert 0 < int(r.ttl(key)) <= 61
    finally:
        r.close()


async def test_limiter_counts_in_redis_per_key(redis_url: str) -> None:
    """RateLimiter on Redis counts each key separately and raises 429 past the limit."""
    redis = Redis.from_url(redis_url)
    try:
        limiter = RateLimiter(2, redis)
        fresh_window()
        await limiter.check("a")
        await limiter.check("a")
        await limiter.check("b")
        with pytest.raises(HTTPException) as caught:
            await limiter.check("a")
        assert caught.value.status_code == 429
        assert caught.value.headers is not None and "Retry-After" in caught.value.headers
        count, reset_in = await limiter.hit("b")
        assert count == 2 and 1 <= reset_in <= 60
    finally:
        await redis.aclose()


async def test_limiter_in_process_and_disabled() -> None:
    """In-process counting is per key; a limit of 0 turns limiting off."""
    fresh_window()
    limiter = RateLimiter(1)
    await limiter.check("a")
    await limiter.check("b")
    with pytest.raises(HTTPException):
        await limiter.check("a")
    off = RateLimiter(0)
    for _ in range(100):
        await off.check("a")


async def test_redis_outage_falls_back_to_in_process_counting() -> None:
    """With Redis unreachable the limiter keeps answering (and still limits) instead of failing requests."""
    from tests.conftest import free_port

    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    limiter = RateLimiter(2, dead)
    fresh_window()
    await limiter.check("kim")
    await limiter.check("kim")
    with pytest.raises(HTTPException) as exc:
        await limiter.check("kim")
    assert exc.value.status_code == 429
    await dead.aclose()
