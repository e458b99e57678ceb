"""Settings come from SILVERTALK_* variables and `.env`; production refuses a weak JWT secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from server.app import create_app
from server.settings import Settings
from tests.conftest import ROOT, free_port

STRONG = "k" * 48


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from no SILVERTALK_ variables, whatever the outer shell set."""
    for name in list(os.environ):
        if name.startswith("SILVERTALK_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "secret", ["", "change-me", "changeme", "secret", "dev-secret-change-me", " CHANGE-ME "]
)
def test_production_refuses_placeholder_secrets(secret: str) -> None:
    """environment=production with a placeholder JWT secret is a ValidationError naming the variable."""
    with pytest.raises(ValidationError, match="SILVERTALK_JWT_SECRET"):
        Settings(_env_file=None, environment="production", jwt_secret=secret)  # type: ignore[call-arg]


def test_production_refuses_a_short_secret() -> None:
    """A real-looking but short secret (under 32 characters) is refused in production."""
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(_env_file=None, environment="production", jwt_secret="x7Gq2-short-but-real")  # type: ignore[call-arg]


def test_production_refuses_the_default_secret() -> None:
    """Not setting SILVERTALK_JWT_SECRET at all in production is refused."""
    with pytest.raises(ValidationError):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


def test_production_accepts_a_strong_secret_and_development_the_default() -> None:
    """A long secret starts in production; development runs on the embedded default."""
    assert Settings(_env_file=None, environment="production", jwt_secret=STRONG).jwt_secret == STRONG  # type: ignore[call-arg]
    dev = Settings(_env_file=None)  # type: ignore[call-arg]
    assert dev.environment == "development" and dev.dev_login is True


def test_dev_login_is_off_by_default_outside_development() -> None:
    """DEV_LOGIN unset: on in development and test, off in production; production refuses it on."""
    assert Settings(_env_file=None).dev_login is True  # type: ignore[call-arg]
    assert Settings(_env_file=None, environment="test").dev_login is True  # type: ignore[call-arg]
    assert Settings(_env_file=None, environment="production", jwt_secret=STRONG).dev_login is False  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="SILVERTALK_DEV_LOGIN"):
        Settings(_env_file=None, environment="production", jwt_secret=STRONG, dev_login=True)  # type: ignore[call-arg]


def test_production_dev_login_answers_404(tmp_path: Path) -> None:
    """ENVIRONMENT=production with DEV_LOGIN unset: POST /v1/auth/dev-login hands out no token."""
    production = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="production",
        jwt_secret=STRONG,
        data_dir=tmp_path / "data",
        preload_engines=False,
        llm_engine="offline",
    )
    with TestClient(create_app(production)) as client:
        r = client.post("/v1/auth/dev-login", json={"name": "kim"})
        assert r.status_code == 404 and "access_token" not in r.text


def test_settings_read_silvertalk_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every documented auth/serving variable is read from the environment with its prefix."""
    env = {
        "SILVERTALK_HOST": "0.0.0.0",
        "SILVERTALK_PORT": "9123",
        "SILVERTALK_DATA_DIR": str(tmp_path),
        "SILVERTALK_DATABASE_URL": "postgresql+psycopg://u@db:5432/st",
        "SILVERTALK_REDIS_URL": "redis://cache:6379/0",
        "SILVERTALK_JWT_SECRET": STRONG,
        "SILVERTALK_DEV_LOGIN": "false",
        "SILVERTALK_KAKAO_APP_ID": "1234567",
        "SILVERTALK_KAKAO_REST_API_KEY": "rest-key",
        "SILVERTALK_KAKAO_CLIENT_SECRET": "client-secret",
        "SILVERTALK_KAKAO_AUTH_URL": "http://127.0.0.1:1/auth",
        "SILVERTALK_KAKAO_API_URL": "http://127.0.0.1:1/api",
        "SILVERTALK_ACCESS_TOKEN_TTL_S": "600",
        "SILVERTALK_REFRESH_TOKEN_TTL_S": "86400",
        "SILVERTALK_RATE_LIMIT_PER_MINUTE": "42",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.host, s.port, s.data_dir) == ("0.0.0.0", 9123, tmp_path)
    assert s.resolved_database_url == "postgresql+psycopg://u@db:5432/st"
    assert s.redis_url == "redis://cache:6379/0"
    assert s.jwt_secret == STRONG and s.dev_login is False
    assert (s.kakao_app_id, s.kakao_rest_api_key, s.kakao_client_secret) == (
        1234567,
        "rest-key",
        "client-secret",
    )
    assert (s.kakao_auth_url, s.kakao_api_url) == ("http://127.0.0.1:1/auth", "http://127.0.0.1:1/api")
    assert (s.access_token_ttl_s, s.refresh_token_ttl_s, s.rate_limit_per_minute) == (600, 86400, 42)


def test_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A `.env` file supplies values; a real environment variable overrides it."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("SILVERTALK_PORT=9001\nSILVERTALK_DEV_LOGIN=false\nSILVERTALK_KAKAO_APP_ID=77\n")
    monkeypatch.setenv("SILVERTALK_PORT", "9002")
    s = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert (s.port, s.dev_login, s.kakao_app_id) == (9002, False, 77)


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    """Without SILVERTALK_DATABASE_URL the database is a SQLite file under the data dir."""
    s = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'silvertalk.db').resolve()}"


def _server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERTALK_")}
    env.update(
        SILVERTALK_DATA_DIR=str(tmp_path / "data"),
        SILVERTALK_PRELOAD_ENGINES="false",
        SILVERTALK_LOG_LEVEL="warning",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),  # this checkout, whatever the venv's editable install points at
    )
    env.update(extra)
    return env


def test_python_m_server_refuses_to_start_with_a_placeholder_secret(tmp_path: Path) -> None:
    """`python -m server` in production with SILVERTALK_JWT_SECRET=change-me exits with the reason."""
    env = _server_env(tmp_path, SILVERTALK_ENVIRONMENT="production", SILVERTALK_JWT_SECRET="change-me")
    done = subprocess.run(
        [sys.executable, "-m", "server"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "SILVERTALK_JWT_SECRET" in done.stderr
    assert not (tmp_path / "data").exists()  # refused before touching storage


def test_python_m_server_refuses_dev_login_in_production(tmp_path: Path) -> None:
    """`python -m server` with ENVIRONMENT=production and DEV_LOGIN=true exits, naming the variable."""
    env = _server_env(
        tmp_path,
        SILVERTALK_ENVIRONMENT="production",
        SILVERTALK_JWT_SECRET=STRONG,
        SILVERTALK_DEV_LOGIN="true",
    )
    done = subprocess.run(
        [sys.executable, "-m", "server"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "SILVERTALK_DEV_LOGIN" in done.stderr


def test_python_m_server_serves_as_configured_by_environment(tmp_path: Path) -> None:
    """`python -m server` binds SILVERTALK_HOST:PORT, uses the data dir, and honours DEV_LOGIN=false."""
    port = free_port()
    env = _server_env(
        tmp_path,
        SILVERTALK_HOST="127.0.0.1",
        SILVERTALK_PORT=str(port),
        SILVERTALK_DEV_LOGIN="false",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start in 90 s"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        dev = httpx.post(f"http://127.0.0.1:{port}/v1/auth/dev-login", json={"name": "kim"}, timeout=10)
        assert dev.status_code == 404
        assert (tmp_path / "data" / "silvertalk.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
