"""Voice messages over HTTP, jobs inline (no Redis): bad input, one history with calls, retry, pages."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis as redis_sync
from fastapi.testclient import TestClient

from server.app import create_app
from storage import db
from storage.models import Conversation, Turn
from tests.conftest import LiveServer, dev_login, make_settings
from tests.fakes.gemini import FakeGemini, Reply
from tests.updates import UpdatesReader

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper-base"


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(reply="That sounds lovely. Tell me more.", ttft_s=0.05) as fake:
        yield fake


def app_client(tmp_path: Path, db_url: str, gemini: FakeGemini, **overrides: Any) -> TestClient:
    settings = make_settings(
        tmp_path,
        db_url,
        stt_model_dir=MODEL_DIR,
        llm_engine="gemini",
        gemini_base_url=gemini.url,
        gemini_api_key=gemini.api_key,
        **overrides,
    )
    return TestClient(create_app(settings))


def silence_wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), dtype=np.int16).tobytes())
    return out.getvalue()


def wait_done(client: TestClient, headers: dict[str, str], mid: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/chat/messages/{mid}", headers=headers).json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


BAD_UPLOADS = [
    ("not audio", {"files": {"audio": ("a.wav", b"GIF89a" + b"\0" * 400, "audio/wav")}}, 415, "not audio"),
    ("empty file", {"files": {"audio": ("a.wav", b"", "audio/wav")}}, 422, "empty"),
    ("a tap, no sound", {"files": {"audio": ("a.wav", silence_wav(0.1), "audio/wav")}}, 422, "empty"),
    (
        "too long",
        {"files": {"audio": ("a.wav", silence_wav(8.0), "audio/wav")}},
        422,
        "too long",
    ),
    ("too big", {"files": {"audio": ("a.wav", silence_wav(40.0), "audio/wav")}}, 413, "too big"),
    ("no audio field", {"files": {"file": ("a.wav", silence_wav(1.0), "audio/wav")}}, 422, "'audio'"),
    (
        "bad language",
        {"files": {"audio": ("a.wav", silence_wav(1.0), "audio/wav")}, "data": {"language": "x!"}},
        422,
        "language",
    ),
    ("empty text", {"json": {"text": "   "}}, 422, "empty"),
    ("no text", {"json": {"words": "hi"}}, 422, "text"),
    ("plain body", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
]


@pytest.mark.parametrize("queue", ["inline", "redis"])
def test_bad_uploads_are_refused_and_nothing_is_queued(
    tmp_path: Path, sqlite_url: str, gemini: FakeGemini, queue: str, request: pytest.FixtureRequest
) -> None:
    """Not audio 415, empty/too long/bad fields 422, too big 413: no message, no file, no job in Redis."""
    redis_url = request.getfixturevalue("redis_url") if queue == "redis" else None
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    opts = {
        "chat_max_audio_s": 5.0,
        "chat_max_audio_bytes": 1_000_000,
        "redis_url": redis_url,
        "redis_prefix": prefix,
    }
    with app_client(tmp_path, sqlite_url, gemini, **opts) as client:
        headers = dev_login(client, "chat-kim")
        for name, kwargs, code, words in BAD_UPLOADS:
            kwargs = dict(kwargs)
            extra_headers = kwargs.pop("headers", {})
            r = client.post("/v1/chat/messages", headers=headers | extra_headers, **kwargs)
            assert r.status_code == code, (name, r.text)
            assert words in r.json()["detail"], (name, r.text)
        assert client.get("/v1/chat/messages", headers=headers).json()["items"] == []
        assert not (tmp_path / "data" / "media" / "chat").exists()
        if redis_url:
            keys = redis_sync.Redis.from_url(redis_url).keys(f"{prefix}*")
            assert keys == [] or all(b"__heartbeats__" in k for k in keys), keys
            # ... and a good one is queued there (no worker runs in this test).
            r = client.post("/v1/chat/messages", headers=headers, json={"text": "hello"})
            assert r.status_code == 202
            assert redis_sync.Redis.from_url(redis_url).llen(f"{prefix}jobs:chat") == 1


def test_message_answers_with_the_history_of_calls(tmp_path: Path, db_url: str, gemini: FakeGemini) -> None:
    """The companion answering a message gets the persona, the user's facts and their last call's turns."""
    with app_client(tmp_path, db_url, gemini) as client:
        headers = dev_login(client, "chat-lee")
        me = client.get("/v1/users/me", headers=headers).json()
        asyncio.run(add_call(db_url, uuid.UUID(me["id"])))
        r = client.post(
            "/v1/chat/messages", headers=headers, json={"text": "What was I planting?", "language": "en"}
        )
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        done = wait_done(client, headers, r.json()["id"])
        assert done["status"] == "done" and done["reply_text"] == "That sounds lovely. Tell me more."
        contents = gemini.requests[-1].body["contents"]
        texts = [part["text"] for c in contents for part in c["parts"]]
        assert texts == ["I planted tomatoes this morning.", "Tomatoes! How lovely.", "What was I planting?"]
        kinds = {c["id"]: c for c in client.get("/v1/conversations", headers=headers).json()["items"]}
        assert len(kinds) == 2  # the call, and the user's messages
        audio = client.get(done["reply_audio_url"], headers=headers)
        assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
        # A second message sees the first message's turns too: one history.
        r = client.post("/v1/chat/messages", headers=headers, json={"text": "And then?", "language": "en"})
        wait_done(client, headers, r.json()["id"])
        texts = [part["text"] for c in gemini.requests[-1].body["contents"] for part in c["parts"]]
        assert texts[-3:] == ["What was I planting?", "That sounds lovely. Tell me more.", "And then?"]


async def add_call(db_url: str, user_id: uuid.UUID) -> None:
    engine = db.create_engine(db_url)
    try:
        async with db.session_factory(engine)() as s:
            call = Conversation(user_id=user_id, language="en")
            s.add(call)
            await s.flush()
            s.add(
                Turn(
                    conversation_id=call.id,
                    item_id="item_1",
                    role="user",
                    text="I planted tomatoes this morning.",
                )
            )
            await s.commit()
            s.add(
                Turn(
                    conversation_id=call.id, item_id="item_2", role="assistant", text="Tomatoes! How lovely."
                )
            )
            await s.commit()
    finally:
        await engine.dispose()


def test_failed_upstream_reads_plainly_and_can_be_retried(
    tmp_path: Path, sqlite_url: str, gemini: FakeGemini
) -> None:
    """The LLM refusing gives `failed` with words; retrying the message answers it; only failed ones retry."""
    gemini.script(Reply.error(400))
    with app_client(tmp_path, sqlite_url, gemini) as client:
        headers = dev_login(client, "chat-park")
        mid = client.post(
            "/v1/chat/messages", headers=headers, json={"text": "Hello", "language": "en"}
        ).json()["id"]
        failed = wait_done(client, headers, mid)
        assert failed["status"] == "failed" and failed["error"].startswith("The companion could not answer")
        assert failed["reply_audio_url"] is None
        assert client.get(f"/v1/chat/messages/{mid}/audio", headers=headers).status_code == 404
        r = client.post(f"/v1/chat/messages/{mid}/retry", headers=headers)
        assert r.status_code == 202 and r.json()["status"] == "queued"
        done = wait_done(client, headers, mid)
        assert done["status"] == "done" and done["error"] is None
        assert client.post(f"/v1/chat/messages/{mid}/retry", headers=headers).status_code == 409


def test_list_pages_newest_first_and_others_are_not_found(
    tmp_path: Path, sqlite_url: str, gemini: FakeGemini
) -> None:
    """Cursor pages, newest first; another user's message answers 404."""
    with app_client(tmp_path, sqlite_url, gemini) as client:
        headers = dev_login(client, "chat-choi")
        ids = [
            client.post(
                "/v1/chat/messages", headers=headers, json={"text": f"n{i}", "language": "en"}
            ).json()["id"]
            for i in range(3)
        ]
        first = client.get("/v1/chat/messages", headers=headers, params={"limit": 2}).json()
        assert [m["id"] for m in first["items"]] == ids[::-1][:2] and first["next_cursor"]
        rest = client.get(
            "/v1/chat/messages", headers=headers, params={"limit": 2, "cursor": first["next_cursor"]}
        )
        assert [m["id"] for m in rest.json()["items"]] == ids[:1] and rest.json()["next_cursor"] is None
        other = dev_login(client, "chat-other")
        assert client.get(f"/v1/chat/messages/{ids[0]}", headers=other).status_code == 404
        assert client.get(f"/v1/chat/messages/{ids[0]}/audio", headers=other).status_code == 404
        for mid in ids:
            wait_done(client, headers, mid)


def test_page_gets_each_status_change(tmp_path: Path, sqlite_url: str, gemini: FakeGemini) -> None:
    """An open page stream (`/v1/chat/updates`) sees the message queued, thinking, speaking, done."""
    settings = make_settings(
        tmp_path,
        sqlite_url,
        stt_model_dir=MODEL_DIR,
        llm_engine="gemini",
        gemini_base_url=gemini.url,
        gemini_api_key=gemini.api_key,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, trust_env=False, timeout=30) as client:
        headers = dev_login(client, "chat-page")
        other = dev_login(client, "chat-page-other")
        with UpdatesReader(live.url, headers) as page, UpdatesReader(live.url, other) as other_page:
            r = client.post(
                "/v1/chat/messages", headers=headers, json={"text": "Hello there", "language": "en"}
            )
            mid = r.json()["id"]
            deadline = time.monotonic() + 60
            while "done" not in page.statuses(mid):
                assert time.monotonic() < deadline, page.events
                time.sleep(0.1)
        assert page.statuses(mid) == ["queued", "thinking", "speaking", "done"]
        done = next(e["message"] for e in page.events if e["message"]["status"] == "done")
        assert done["reply_audio_url"] and done["reply_text"]
        assert other_page.events == []  # nobody else's
