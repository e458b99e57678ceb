"""Faults injected under live calls over a real socket: the caller hears a short apology at most,
the call goes on, and what was said is still stored.

One live server for the module: the fake Gemini as its LLM (real google-genai client), speech
engines that fail on demand (`tests.fakes.engines`, registered like any engine), PostgreSQL and
Redis each behind a `TcpProxy` the tests take down, black-hole and bring back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psycopg
import pytest
import redis as redis_sync

from clients.realtime_client import RealtimeClient
from pipeline import RetryableEngineError
from pipeline.prompts import APOLOGIES
from tests.conftest import PG_ADMIN_DSN, REDIS_URL, LiveServer, make_settings, unavailable
from tests.fakes.engines import FlakySTT, FlakyTTS, flaky_engines
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.tcpproxy import TcpProxy

APOLOGY = APOLOGIES["en"]
ANSWER = "That is lovely to hear. Tell me more about it."
HEARD = "I went for a walk by the river this morning."
RATE_LIMIT = 40


@dataclass
class Faults:
    """The module's live server and every fault switch the tests use."""

    server: LiveServer
    gemini: FakeGemini
    stt: FlakySTT
    tts: FlakyTTS
    db: TcpProxy
    redis: TcpProxy
    pg_dsn: str  # the test database, reached directly (not through the proxy)


@pytest.fixture(scope="module")
def pg_database(pg_template: str) -> Iterator[str]:
    name = f"silvertalk_faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield name
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, pg_database: str) -> Iterator[Faults]:
    real_redis = redis_sync.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        real_redis.ping()
    except redis_sync.RedisError:
        unavailable("Redis at 127.0.0.1:6379", "redis-server --daemonize yes --port 6379")
    real_redis.close()
    pg, rd = urlsplit(PG_ADMIN_DSN), urlsplit(REDIS_URL)
    stt, tts = FlakySTT(HEARD), FlakyTTS()
    with (
        flaky_engines(stt, tts),
        FakeGemini(reply=ANSWER, ttft_s=0.05) as gemini,
        TcpProxy(pg.port or 5432, pg.hostname or "127.0.0.1") as db_proxy,
        TcpProxy(rd.port or 6379, rd.hostname or "127.0.0.1") as redis_proxy,
    ):
        user = f"{pg.username}@" if pg.username else ""
        settings = make_settings(
            tmp_path_factory.mktemp("faults"),
            f"postgresql+psycopg://{user}127.0.0.1:{db_proxy.port}/{pg_database}",
            redis_url=f"redis://127.0.0.1:{redis_proxy.port}{rd.path}",
            rate_limit_per_minute=RATE_LIMIT,
            preload_engines=True,
            stt_engine="flaky-stt",
            tts_engine="flaky-tts",
            llm_engine="gemini",
            gemini_base_url=gemini.url,
            gemini_api_key=gemini.api_key,
            llm_timeout_s=2.0,
            call_summaries=False,  # no after-call request may take a reply scripted for a test
        )
        with LiveServer(settings) as live:
            direct = urlunsplit(pg._replace(path=f"/{pg_database}"))
            yield Faults(live, gemini, stt, tts, db_proxy, redis_proxy, direct)


@pytest.fixture(autouse=True)
def healed(faults: Faults) -> Iterator[None]:
    """Every test starts and ends with every service up and no failure queued."""
    yield
    faults.db.up()
    faults.redis.up()
    faults.stt.failures.clear()
    faults.tts.failures.clear()
    faults.gemini.clear_script()


async def login(faults: Faults, name: str | None = None) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        r = await http.post(
            f"{faults.server.url}/v1/auth/dev-login", json={"name": name or uuid.uuid4().hex[:8]}
        )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@dataclass
class Turn:
    """What the caller got for one turn."""

    status: str | None = None
    heard: str = ""  # the reply's audio transcript as it was spoken
    audio_bytes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


class Caller:
    """A text or audio caller on one realtime connection (turn detection off: it commits itself)."""

    def __init__(self, client: RealtimeClient) -> None:
        self.client = client

    async def start(self) -> None:
        await self.next("session.created")
        await self.client.update_session(
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": None, "transcription": {"language": "en"}}},
            }
        )
        await self.next("session.updated")

    async def next(
        self, kind: str, within_s: float = 30.0, seen: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                event = await self.client.recv()
                if seen is not None:
                    seen.append(event)
                if event["type"] == kind:
                    return event

    async def say(self, text: str, within_s: float = 30.0) -> Turn:
        """A user text turn and response.create; returns when its response.done arrives."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.client.send("conversation.item.create", item=item)
        await self.client.create_response()
        return await self.reply(within_s)

    async def speak(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        """Send audio and commit it; returns the events up to its transcript (completed or failed)."""
        t = np.arange(int(24000 * seconds)) / 24000
        pcm = (np.sin(2 * np.pi * 180 * t) * 6000).astype("<i2").tobytes()
        for i in range(0, len(pcm), 9600):
            await self.client.append(pcm[i : i + 9600])
        await self.client.commit()
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while True:
                event = await self.client.recv()
                seen.append(event)
                if event["type"].startswith("conversation.item.input_audio_transcription.") and not event[
                    "type"
                ].endswith(".delta"):
                    return seen

    async def reply(self, within_s: float = 30.0) -> Turn:
        turn = Turn()
        async with asyncio.timeout(within_s):
            while True:
                event = await self.client.recv()
                turn.events.append(event)
                kind = event["type"]
                if kind == "response.output_audio_transcript.delta":
                    turn.heard += event["delta"]
                elif kind == "response.output_audio.delta":
                    turn.audio_bytes += len(event["delta"]) * 3 // 4
                elif kind == "response.done":
                    turn.status = event["response"]["status"]
                    return turn


@asynccontextmanager
async def call(faults: Faults, token: str | None = None) -> AsyncIterator[Caller]:
    async with RealtimeClient.connect(faults.server.url, token or await login(faults)) as client:
        caller = Caller(client)
        await caller.start()
        yield caller


def assert_apology_only(turn: Turn, said_before: str = "") -> None:
    """A failed reply: the caller heard at most the words that came before and one short apology."""
    assert turn.status == "failed", turn.events[-1]
    heard = " ".join(turn.heard.split())
    assert heard.endswith(APOLOGY) and heard.count(APOLOGY) == 1, heard
    assert said_before.startswith(heard[: -len(APOLOGY)].strip()), heard
    assert turn.audio_bytes > 0


async def answered(caller: Caller) -> None:
    later = await caller.say("Are you still there?")
    assert later.status == "completed" and " ".join(later.heard.split()) == ANSWER, later.events[-1]


# --- the language model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Reply.error(429), id="429"),
        pytest.param(Reply.error(500), id="500"),
        pytest.param(Reply.hanging(), id="timeout"),
        pytest.param(Reply.mid_stream_error(), id="error-mid-stream"),
        pytest.param(Reply.cut_off(), id="stops-mid-sentence"),
        pytest.param(Reply.dropped(), id="connection-lost-mid-stream"),
        pytest.param(Reply.stalled(), id="stalls-mid-stream"),
    ],
)
async def test_an_llm_failure_is_one_apology_and_the_call_goes_on(faults: Faults, failure: Reply) -> None:
    """Gemini answering 429, 500, nothing at all, or a stream that breaks off mid-sentence: the
    caller hears the words already spoken (if any) and one short apology, and the next turn is answered."""
    faults.gemini.script(failure)
    async with call(faults) as caller:
        started = time.monotonic()
        turn = await caller.say("Hello, how are you?")
        assert time.monotonic() - started < 15  # the 2 s LLM timeout, not forever
        assert_apology_only(turn, said_before=failure.text)
        await answered(caller)


# --- the speech engines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(RetryableEngineError("Whisper decode failed: out of memory"), id="engine-error"),
        pytest.param(RuntimeError("decoder crashed"), id="unexpected-exception"),
    ],
)
async def test_a_failed_transcription_settles_and_later_turns_are_answered(
    faults: Faults, error: BaseException
) -> None:
    """The STT engine raising: that turn gets `transcription.failed`, nothing waits on it, and the
    next spoken turn is transcribed and answered."""
    async with call(faults) as caller:
        faults.stt.fail_next(error)
        seen = await caller.speak()
        assert seen[-1]["type"] == "conversation.item.input_audio_transcription.failed", seen[-1]
        seen = await caller.speak()
        assert seen[-1]["type"] == "conversation.item.input_audio_transcription.completed"
        assert seen[-1]["transcript"] == HEARD
        await caller.client.create_response()
        turn = await caller.reply()
        assert turn.status == "completed" and " ".join(turn.heard.split()) == ANSWER


@pytest.mark.parametrize("after_chunks", [0, 1], ids=["before-any-audio", "mid-sentence"])
async def test_a_tts_failure_ends_that_reply_and_the_call_goes_on(faults: Faults, after_chunks: int) -> None:
    """The TTS engine raising before or during a sentence: that reply ends `failed` (no endless
    silence, no closed socket), and the next turn is spoken in full."""
    async with call(faults) as caller:
        faults.tts.fail_next(RuntimeError("voice crashed"), after_chunks=after_chunks)
        turn = await caller.say("Hello, how are you?")
        assert turn.status == "failed" and turn.events[-1]["response"]["status_details"]["error"]
        await answered(caller)


# --- the database ----------------------------------------------------------------------------


def stored(dsn: str, conversation_id: str) -> tuple[list[tuple[str, str, str]], Any]:
    with psycopg.connect(dsn) as conn:
        turns = conn.execute(
            "select role, text, status from turn where conversation_id = %s order by ended_at",
            (uuid.UUID(conversation_id),),
        ).fetchall()
        ended = conn.execute(
            "select ended_at from conversation where id = %s", (uuid.UUID(conversation_id),)
        ).fetchone()
    return [(r, t, s) for r, t, s in turns], ended[0] if ended else None


async def conversation_of(faults: Faults, token: str) -> str:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        r = await http.get(
            f"{faults.server.url}/v1/conversations", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["items"] if isinstance(body, dict) else body
    return str(items[0]["id"])


async def wait_stored(
    faults: Faults, conversation_id: str, n: int, within_s: float = 30
) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + within_s
    while True:
        turns, ended = await asyncio.to_thread(stored, faults.pg_dsn, conversation_id)
        if (len(turns) >= n and ended is not None) or time.monotonic() > deadline:
            return turns
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("outage", "back"), [("down", "mid-call"), ("down", "after-hang-up"), ("hanging", "mid-call")]
)
async def test_the_database_away_for_seconds_loses_no_turn(faults: Faults, outage: str, back: str) -> None:
    """PostgreSQL refusing or hanging for a few seconds mid-call: the caller is answered as usual,
    and every finished turn is stored once it is back (also when it is back after the hang-up)."""
    token = await login(faults)
    async with call(faults, token) as caller:
        first = await caller.say("Good morning.")
        assert first.status == "completed"
        if outage == "down":
            faults.db.down()
        else:
            faults.db.blackhole()
        during = await caller.say("I slept well last night.")
        assert during.status == "completed" and " ".join(during.heard.split()) == ANSWER
        await asyncio.sleep(2)  # the store has tried and failed by now
        if back == "mid-call":
            faults.db.up()
            after = await caller.say("And you?")
            assert after.status == "completed"
    if back == "after-hang-up":
        await asyncio.sleep(2)
        faults.db.up()
    conversation_id = await conversation_of(faults, token)
    n = 6 if back == "mid-call" else 4
    turns = await wait_stored(faults, conversation_id, n)
    said = [t for r, t, _ in turns if r == "user"]
    assert said[:2] == ["Good morning.", "I slept well last night."], turns
    assert len(turns) == n and all(s == "completed" for _, _, s in turns), turns
    assert len({t for t in said}) == len(said)  # nothing stored twice


# --- Redis -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["down", "hanging"])
async def test_calls_and_rate_limits_go_on_without_redis(faults: Faults, how: str) -> None:
    """Redis refusing connections or accepting them and never answering: calls are answered, REST
    answers promptly, and the per-user limit is still enforced (counted in-process)."""
    token = await login(faults)
    getattr(faults.redis, "down" if how == "down" else "blackhole")()
    async with call(faults, token) as caller:
        await answered(caller)
    codes, slowest = [], 0.0
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        while len(codes) < 2 * RATE_LIMIT + 2 and 429 not in codes:  # a window may turn over once
            started = time.monotonic()
            r = await http.get(
                f"{faults.server.url}/v1/users/me", headers={"Authorization": f"Bearer {token}"}
            )
            slowest = max(slowest, time.monotonic() - started)
            codes.append(r.status_code)
    assert set(codes) <= {200, 429} and codes[0] == 200, codes
    assert codes[-1] == 429, codes  # the limit held without Redis
    assert slowest < 3.0, f"a request took {slowest:.1f} s while Redis was {how}"
    print(json.dumps({"redis": how, "slowest_request_s": round(slowest, 2)}))
