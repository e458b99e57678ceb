"""Gateways side by side: real `python -m server` processes sharing PostgreSQL and Redis.

Two gateways share the per-user call limit, the rate limits and generation pushes; a third is sent
a real SIGTERM mid-call to see it drain. Engines are in-process (Whisper base, espeak-ng, the fake
Gemini), so this needs no inference tier.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis as redis_sync
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import PG_ADMIN_DSN, REDIS_URL, ROOT, _pg_url, free_port, unavailable
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.replicate import FakeReplicate

pytestmark = pytest.mark.slow

MODEL_DIR = ROOT / "models" / "whisper-base"
REPLY = "That sounds lovely. Tell me more about it."
SHORT = "Oh, how nice."


class Gateway:
    """`python -m server` in a child process on a free port, configured by SILVERTALK_* variables."""

    def __init__(self, tmp: Path, name: str, **settings: Any) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        values: dict[str, Any] = {
            "environment": "test",
            "host": "127.0.0.1",
            "port": self.port,
            "log_level": "info",
            "data_dir": tmp / name,
            "dev_login": True,
            "jwt_secret": "test-secret-" + "x" * 32,
            "migrate_on_start": False,  # migrated once, as `make run-cluster` does
            "stt_model_dir": MODEL_DIR,
            "tts_engine": "espeak",
            "rate_limit_per_minute": 10_000,
        } | settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERTALK_")}
        for key, value in values.items():
            text = json.dumps(value) if isinstance(value, list | bool) else str(value)
            env[f"SILVERTALK_{key.upper()}"] = text
        env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv points at
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_until_serving()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready in time:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- shared services: one database and one key namespace per module --------------------------


@pytest.fixture(scope="module")
def database(pg_template: str) -> Iterator[str]:
    name = f"silvertalk_c_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[tuple[str, str]]:
    """The Redis URL and a key/channel prefix no other test uses; the prefix's keys go at the end."""
    client = redis_sync.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis_sync.RedisError:
        unavailable("Redis at 127.0.0.1:6379", "redis-server --daemonize yes --port 6379 --save ''")
    prefix = f"silvertalk-cluster-{uuid.uuid4().hex[:8]}:"
    yield REDIS_URL, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(reply=REPLY, ttft_s=0.2) as fake:
        yield fake


@pytest.fixture(scope="module")
def replicate() -> Iterator[FakeReplicate]:
    with FakeReplicate() as fake:
        yield fake


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    database: str,
    shared_redis: tuple[str, str],
    gemini: FakeGemini,
    replicate: FakeReplicate,
) -> Iterator[tuple[Gateway, Gateway]]:
    """Two gateways on one database and one Redis, as behind the load balancer."""
    tmp = tmp_path_factory.mktemp("pair")
    common = {
        "database_url": database,
        "redis_url": shared_redis[0],
        "redis_prefix": shared_redis[1],
        "rate_limit_per_minute": 40,
        "llm_engine": "gemini",
        "gemini_base_url": gemini.url,
        "gemini_api_key": gemini.api_key,
        "replicate_api_token": replicate.token,
        "replicate_base_url": replicate.url,
        "replicate_allow_loopback_outputs": True,
        "replicate_prefer_wait_s": 0,
        "generation_poll_interval_s": 0.2,
        "generation_poll_max_interval_s": 1.0,
    }
    gateways: list[Gateway] = []
    try:
        for name in ("a", "b"):
            gateways.append(Gateway(tmp, name, **common))
        yield gateways[0], gateways[1]
    finally:
        for g in gateways:
            g.stop()


def login(gateway: Gateway | str, name: str) -> dict[str, str]:
    """Dev-login on a gateway (or at a base URL); returns the Authorization header."""
    base = gateway if isinstance(gateway, str) else gateway.url
    r = httpx.post(f"{base}/v1/auth/dev-login", json={"name": name}, trust_env=False)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def recv(ws: ClientConnection, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return event


async def until(ws: ClientConnection, kind: str, timeout: float = 60) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """Events up to and including the first of type `kind`."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1]["type"] != kind:
        seen.append(await recv(ws, deadline - time.monotonic()))
    return seen


async def say(ws: ClientConnection, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"}))


# --- two gateways ----------------------------------------------------------------------------


async def test_two_gateways_share_the_per_user_call_limit(pair: tuple[Gateway, Gateway]) -> None:
    """With one call open on each gateway, a third on either is refused; hanging up frees a slot."""
    a, b = pair
    headers = login(a, "cluster-limit")
    async with (
        websockets.connect(a.ws_url, additional_headers=headers) as on_a,
        websockets.connect(b.ws_url, additional_headers=headers) as on_b,
    ):
        for ws in (on_a, on_b):
            assert (await recv(ws))["type"] == "session.created"
        for gateway in (a, b):
            async with websockets.connect(gateway.ws_url, additional_headers=headers) as third:
                error = await recv(third)
                assert error["type"] == "error" and error["error"]["code"] == "too_many_calls"
        await on_a.close()
        for _ in range(50):  # the gateway frees the slot a moment after the client hangs up
            async with websockets.connect(b.ws_url, additional_headers=headers) as again:
                if (await recv(again))["type"] == "session.created":
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the freed slot was never given out")


async def test_a_generation_update_reaches_the_call_held_by_the_other_gateway(
    pair: tuple[Gateway, Gateway],
) -> None:
    """A picture made through gateway A is announced on the user's call held by gateway B."""
    a, b = pair
    headers = login(a, "cluster-push")
    async with (
        websockets.connect(b.ws_url, additional_headers=headers) as call,
        httpx.AsyncClient(base_url=a.url, headers=headers, trust_env=False, timeout=30) as api,
    ):
        assert (await recv(call))["type"] == "session.created"
        memory = await api.post("/v1/memories", json={"title": "부산 바닷가", "body": "파도 소리."})
        assert memory.status_code == 201, memory.text
        created = await api.post("/v1/generations", json={"kind": "image", "memory_id": memory.json()["id"]})
        assert created.status_code == 202, created.text
        statuses: list[str] = []
        while not statuses or statuses[-1] not in {"succeeded", "failed"}:
            event = await recv(call, 30)
            assert event["type"] == "silvertalk.generation.updated", event
            assert event["generation"]["id"] == created.json()["id"]
            statuses.append(event["generation"]["status"])
        assert statuses[-1] == "succeeded", statuses


def test_rate_limits_hold_across_gateways(pair: tuple[Gateway, Gateway]) -> None:
    """One user's requests count once over both gateways: the 41st in a minute is refused on either."""
    a, b = pair
    headers = login(a, "cluster-rate")
    if 60 - time.time() % 60 < 20:  # the window is a clock minute: start well inside one
        time.sleep(60 - time.time() % 60 + 0.5)
    codes = [
        httpx.get(f"{g.url}/v1/users/me", headers=headers, trust_env=False).status_code for g in [a, b] * 20
    ]
    assert codes == [200] * 40
    for g in (a, b):
        refused = httpx.get(f"{g.url}/v1/users/me", headers=headers, trust_env=False)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


# --- SIGTERM ---------------------------------------------------------------------------------


def user_id(gateway: Gateway, headers: dict[str, str]) -> str:
    r = httpx.get(f"{gateway.url}/v1/users/me", headers=headers, trust_env=False)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def stored_turns(database: str, me: str) -> list[tuple[str, str, str]]:
    """(role, text, status) of the user's turns, read straight from PostgreSQL."""
    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select t.role, t.text, t.status from turn t join conversation c on c.id = t.conversation_id "
            "where c.user_id = %s order by t.started_at",
            (me,),
        ).fetchall()
    return [(str(r), str(t), str(s)) for r, t, s in rows]


async def test_sigterm_drains_calls_then_closes_them_with_1012(
    tmp_path: Path, database: str, shared_redis: tuple[str, str], gemini: FakeGemini
) -> None:
    """SIGTERM: /readyz 503 and new calls refused at once; a reply in flight finishes and is stored,
    then 1012; a call still busy when the grace period ends is closed with 1012 too."""
    gateway = Gateway(
        tmp_path,
        "draining",
        database_url=database,
        redis_url=shared_redis[0],
        redis_prefix=shared_redis[1],
        llm_engine="gemini",
        gemini_base_url=gemini.url,
        gemini_api_key=gemini.api_key,
        shutdown_grace_s=6,
    )
    try:
        quick, slow = login(gateway, "drain-quick"), login(gateway, "drain-slow")
        quick_id, slow_id = user_id(gateway, quick), user_id(gateway, slow)
        # The first reply (about a second of speech, paced in real time) ends well within the grace.
        gemini.script(Reply(SHORT, ttft_s=0.5), Reply(hang=True))
        async with (
            websockets.connect(gateway.ws_url, additional_headers=quick) as finishing,
            websockets.connect(gateway.ws_url, additional_headers=slow) as stuck,
        ):
            for ws in (finishing, stuck):
                assert (await recv(ws))["type"] == "session.created"
            await say(finishing, "My daughter called this morning.")
            await until(finishing, "response.created")
            await say(stuck, "Tell me a long story.")
            await until(stuck, "response.created")
            signalled = time.monotonic()
            gateway.proc.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient(trust_env=False) as http:
                for _ in range(50):
                    ready = await http.get(f"{gateway.url}/readyz")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.02)
            assert ready.status_code == 503 and ready.json()["status"] == "draining"
            assert time.monotonic() - signalled < 1.0
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(gateway.ws_url, additional_headers=quick):
                    pass
            assert refused.value.response.status_code == 503

            rest = await until(finishing, "silvertalk.call.ending", 20)
            done = next(e for e in rest if e["type"] == "response.done")
            assert done["response"]["status"] == "completed"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(finishing)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            assert time.monotonic() - signalled < 5  # ended at its quiet moment, not at grace end

            with pytest.raises(websockets.ConnectionClosed) as cut:
                while True:
                    await recv(stuck, 20)
            assert cut.value.rcvd is not None and cut.value.rcvd.code == 1012
            assert 6 <= time.monotonic() - signalled < 12
        gateway.proc.wait(30)
        assert stored_turns(database, quick_id) == [
            ("user", "My daughter called this morning.", "completed"),
            ("assistant", SHORT, "completed"),
        ]
        slow_turns = stored_turns(database, slow_id)
        assert slow_turns[0] == ("user", "Tell me a long story.", "completed")
        assert ("assistant", REPLY, "completed") not in slow_turns
    finally:
        gateway.stop()


# --- make run-cluster ------------------------------------------------------------------------


def two_free_ports() -> int:
    """A port p with p + 1 free too (the script puts its gateways on p and p + 1)."""
    for _ in range(50):
        p = free_port()
        if p < 65535 and not port_taken(p + 1):
            return p
    raise RuntimeError("no two adjacent free ports")


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_run_cluster_serves_calls_through_the_balancer_and_drains_on_ctrl_c(
    tmp_path: Path, database: str, shared_redis: tuple[str, str], gemini: FakeGemini
) -> None:
    """`python -m deploy.cluster`: calls go through HAProxy to both gateways; Ctrl-C ends them with 1012."""
    if shutil.which("haproxy") is None:
        unavailable("HAProxy", "make haproxy (apt-get install -y haproxy)")
    lb, first = free_port(), two_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERTALK_")} | {
        "PYTHONPATH": str(ROOT),
        "SILVERTALK_ENVIRONMENT": "test",
        "SILVERTALK_DATA_DIR": str(tmp_path / "data"),
        "SILVERTALK_DATABASE_URL": database,
        "SILVERTALK_REDIS_URL": shared_redis[0],
        "SILVERTALK_REDIS_PREFIX": shared_redis[1],
        "SILVERTALK_JWT_SECRET": "test-secret-" + "x" * 32,
        "SILVERTALK_STT_MODEL_DIR": str(MODEL_DIR),
        "SILVERTALK_TTS_ENGINE": "espeak",
        "SILVERTALK_LLM_ENGINE": "gemini",
        "SILVERTALK_GEMINI_BASE_URL": gemini.url,
        "SILVERTALK_GEMINI_API_KEY": gemini.api_key,
        "SILVERTALK_SHUTDOWN_GRACE_S": "10",
    }
    argv = [sys.executable, "-m", "deploy.cluster", "--engines", "local", "--port", str(lb)]
    log_path = tmp_path / "cluster.log"
    with log_path.open("wb") as log:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [*argv, "--gateway-port", str(first)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while b"Ctrl-C stops everything" not in log_path.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.3)
        url = f"ws://127.0.0.1:{lb}/v1/realtime"
        calls: list[ClientConnection] = []
        served_by: set[int] = set()
        for name in ("lb-one", "lb-two"):
            ws = await websockets.connect(url, additional_headers=login(f"http://127.0.0.1:{lb}", name))
            calls.append(ws)
            assert (await recv(ws))["type"] == "session.created"
        # leastconn: the second call went to the other gateway, so each holds one.
        async with httpx.AsyncClient(trust_env=False) as http:
            for port in (first, first + 1):
                metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                served_by |= {port} if "silvertalk_calls_open 1.0" in metrics else set()
        assert served_by == {first, first + 1}
        await say(calls[0], "Hello from behind the balancer.")
        await until(calls[0], "response.done")
        proc.send_signal(signal.SIGINT)
        for ws in calls:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await recv(ws, 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
