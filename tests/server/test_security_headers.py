"""CORS from the allowed origins, security headers on every response, and /metrics closed in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.conftest import dev_login, make_settings

GOOD = "http://app.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


def production(tmp_path: Path, **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="production",
        jwt_secret="p" * 48,
        data_dir=tmp_path / "data",
        preload_engines=False,
        llm_engine="offline",
        **values,
    )


def test_preflight_and_requests_from_an_allowed_origin(tmp_path: Path, db_url: str) -> None:
    """A browser app on an allowed origin gets its preflight answered and may read answers; others not."""
    with TestClient(create_app(make_settings(tmp_path, db_url, allowed_origins=[GOOD]))) as client:
        auth = dev_login(client)
        r = client.options("/v1/events", headers={"Origin": GOOD} | PREFLIGHT)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == GOOD
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = client.get("/v1/events", headers=auth | {"Origin": GOOD})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == GOOD
        r = client.options("/v1/events", headers={"Origin": "http://evil.example"} | PREFLIGHT)
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = client.get("/v1/events", headers=auth | {"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_every_response_carries_the_security_headers(tmp_path: Path, db_url: str) -> None:
    """API answers get nosniff, no framing, no referrer and a locked CSP; the call page keeps its own CSP."""
    with TestClient(create_app(make_settings(tmp_path, db_url))) as client:
        for r in (client.get("/healthz"), client.get("/v1/users/me"), client.post("/v1/events", json={})):
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["content-security-policy"].startswith("default-src 'none'")
            assert "strict-transport-security" not in r.headers  # served over plain http
        page = client.get("/")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "connect-src 'self'" in csp and "script-src" not in csp and "default-src 'self'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in client.get("/docs").headers["content-security-policy"]
    https = make_settings(tmp_path, db_url, public_base_url="https://silvertalk.example")
    with TestClient(create_app(https)) as client:
        assert client.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_metrics_are_closed_in_production(tmp_path: Path) -> None:
    """Production: /metrics is 404 without a token configured, 401 without the bearer token, 200 with it."""
    with TestClient(create_app(production(tmp_path))) as client:
        assert client.get("/metrics").status_code == 404
    with TestClient(create_app(production(tmp_path, metrics_token="m" * 32))) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert r.status_code == 200 and "silvertalk_calls_open" in r.text
    with TestClient(
        create_app(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 't.db'}"))
    ) as client:
        assert client.get("/metrics").status_code == 200  # development and test: open
