"""Per client address limits on login, refresh and realtime upgrades: in-process, in Redis, behind a proxy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from server.app import create_app
from tests.conftest import LiveServer, free_port, make_settings


def fresh_window() -> None:
    """The limiter counts per wall-clock minute: don't start a test in its last seconds."""
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.05)


def login(client: Any, name: str = "kim", **headers: str) -> httpx.Response:
    r: httpx.Response = client.post("/v1/auth/dev-login", json={"name": name}, headers=headers)
    return r


def test_logins_and_refreshes_share_a_budget_per_address(tmp_path: Path, db_url: str) -> None:
    """At 3/min a fourth login or refresh from one address is 429 with Retry-After; other paths are not."""
    settings = make_settings(tmp_path, db_url, login_rate_limit_per_minute=3)
    with TestClient(create_app(settings)) as client:
        fresh_window()
        first = login(client).json()
        assert login(client, "lee").status_code == 200
        assert (
            client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 200
        )
        for attempt in (
            lambda: login(client, "park"),
            lambda: client.post("/v1/auth/refresh", json={"refresh_token": "x"}),
        ):
            r = attempt()
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["retry-after"]) <= 60 and "address" in r.json()["detail"]
        # The per-address door does not close the API to users who are logged in.
        me = client.get("/v1/users/me", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert me.status_code == 200


def test_address_budget_is_shared_in_redis_and_survives_its_outage(
    tmp_path: Path, db_url: str, redis_url: str
) -> None:
    """Two apps on one Redis share an address's budget; with Redis down, counting goes on in-process."""
    settings = make_settings(tmp_path, db_url, redis_url=redis_url, login_rate_limit_per_minute=2)
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        fresh_window()
        assert login(one).status_code == 200
        assert login(two).status_code == 200
        assert login(one).status_code == 429
    keys = redis_sync.Redis.from_url(redis_url).keys("silvertalk:ratelimit:address:login:*")
    assert len(keys) == 1
    dead = make_settings(
        tmp_path, db_url, redis_url=f"redis://127.0.0.1:{free_port()}/0", login_rate_limit_per_minute=2
    )
    with TestClient(create_app(dead)) as client:
        fresh_window()
        assert [login(client).status_code for _ in range(3)] == [200, 200, 429]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(tmp_path: Path, sqlite_url: str) -> None:
    """Through a trusted proxy each forwarded client has its own budget; from others the header is ignored."""
    trusting = make_settings(
        tmp_path / "a", sqlite_url, login_rate_limit_per_minute=1, trusted_proxies=["127.0.0.0/8"]
    )
    with LiveServer(trusting) as server, httpx.Client(base_url=server.url, trust_env=False) as client:
        fresh_window()
        assert login(client, **{"x-forwarded-for": "203.0.113.7"}).status_code == 200
        assert login(client, **{"x-forwarded-for": "203.0.113.7"}).status_code == 429
        # The proxy appends the real client: what the client wrote on the left is not believed.
        assert login(client, **{"x-forwarded-for": "198.51.100.1, 203.0.113.7"}).status_code == 429
        assert login(client, **{"x-forwarded-for": "203.0.113.8"}).status_code == 200
    plain = make_settings(tmp_path / "b", sqlite_url, login_rate_limit_per_minute=1)
    with LiveServer(plain) as server, httpx.Client(base_url=server.url, trust_env=False) as client:
        fresh_window()
        assert login(client, **{"x-forwarded-for": "203.0.113.7"}).status_code == 200
        assert login(client, **{"x-forwarded-for": "203.0.113.9"}).status_code == 429


def test_realtime_upgrades_are_limited_per_address(tmp_path: Path, sqlite_url: str) -> None:
    """At 2/min the third upgrade from an address is refused before accept (HTTP 403), good token or not."""
    settings = make_settings(
        tmp_path, sqlite_url, realtime_rate_limit_per_minute=2, trusted_proxies=["127.0.0.1"]
    )
    with LiveServer(settings) as server:
        token = httpx.post(f"{server.url}/v1/auth/dev-login", json={"name": "kim"}, trust_env=False).json()[
            "access_token"
        ]
        url = f"{server.ws_url}/v1/realtime"
        good = {"Authorization": f"Bearer {token}"}
        fresh_window()
        for headers in ({}, good):  # a refused and an accepted upgrade both count
            try:
                with connect(url, additional_headers=headers) as ws:
                    assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
            except InvalidStatus as e:
                assert e.response.status_code == 403 and headers == {}
        with pytest.raises(InvalidStatus) as refused, connect(url, additional_headers=good):
            pass
        assert refused.value.response.status_code in (403, 429)
        # Another address (through the trusted proxy) still gets in.
        with connect(url, additional_headers=good | {"X-Forwarded-For": "203.0.113.5"}) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
