"""The realtime gateway over a real socket: the openai SDK holds calls with real speech and engines."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from faster_whisper import decode_audio
from openai import AsyncOpenAI
from websockets.typing import Subprotocol

from pipeline.audio import ULAW_8K
from tests.conftest import FIXTURES, LiveServer, make_settings
from tests.fakes.gemini import FakeGemini, Reply

pytestmark = pytest.mark.slow

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper-base"


LONG_EN = (
    "That is a lovely thing to say, and I am glad you told me. I remember how warm the summers were "
    "by the sea. Would you like to tell me more about your day today?"
)
SHORT_KO = "안녕하세요, 반가워요. 오늘 날씨가 정말 좋네요."


def answer(body: dict[str, Any]) -> str:
    """The fake Gemini answers Korean in Korean, anything else with a long English reply."""
    last = json.dumps(body.get("contents", [])[-1:], ensure_ascii=False)
    return SHORT_KO if any("\uac00" <= ch <= "\ud7a3" for ch in last) else LONG_EN


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(reply=answer, ttft_s=0.3) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini) -> Iterator[LiveServer]:
    """One live server per module: real Whisper base and Piper/espeak, the fake Gemini at 300 ms TTFT."""
    tmp = tmp_path_factory.mktemp("rt")
    settings = make_settings(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'rt.db'}",
        preload_engines=True,
        stt_model_dir=MODEL_DIR,
        allowed_origins=["http://good.example"],
        llm_engine="gemini",
        gemini_base_url=gemini.url,
        gemini_api_key=gemini.api_key,
        call_summaries=False,  # no after-call request may take a reply scripted for a test
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def token(server: LiveServer) -> str:
    r = httpx.post(f"{server.url}/v1/auth/dev-login", json={"name": "rt-kim"}, trust_env=False)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def pcm(name: str, rate: int) -> np.ndarray:
    x = decode_audio(str(FIXTURES / name), sampling_rate=rate)
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def client(server: LiveServer, token: str) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=token, base_url=f"{server.url}/v1", websocket_base_url=f"{server.ws_url}/v1")


async def stream(conn: Any, audio: bytes, bytes_per_20ms: int, speed: float = 4.0) -> None:
    """Send audio as 20 ms appends at `speed` x real time."""
    for i in range(0, len(audio), bytes_per_20ms):
        await conn.send(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(audio[i : i + bytes_per_20ms]).decode(),
            }
        )
        await asyncio.sleep(0.02 / speed)


async def say(conn: Any, text: str) -> None:
    """A user text turn followed by a request for a reply (what a client does without server VAD)."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await conn.send({"type": "conversation.item.create", "item": item})
    await conn.send({"type": "response.create"})


async def until(conn: Any, kind: str, seen: list[Any], timeout: float = 60) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = await asyncio.wait_for(conn.recv(), deadline - time.monotonic())
        seen.append(event)
        if event.type == kind:
            return event
    raise AssertionError(f"no {kind}")


async def test_sdk_holds_a_multi_turn_english_call(server: LiveServer, token: str) -> None:
    """GA SDK: JFK then a telephone sentence, each transcribed and answered in speech with timings."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await english_call(conn, seen)
        assert seen[0].type == "session.created" and seen[0].session.audio.input.format.rate == 24000
        turns = [pcm("jfk.flac", 24000), pcm("osr_us_000_0034_8k.wav", 24000)[: 24000 * 3]]
        transcripts, timings = [], []
        for audio in turns:
            start = len(seen)
            body = np.concatenate([audio, np.zeros(24000 * 3, dtype=np.int16)]).tobytes()
            await stream(conn, body, 960)
            done = await until(conn, "response.done", seen, timeout=90)
            while done.response.status != "completed":  # a long pause inside the clip may split the turn
                done = await until(conn, "response.done", seen, timeout=90)
            transcripts.append(heard_whole(seen[start:]))
            timings.append(done.response.model_extra["silvertalk_timings"])
            usage = done.response.usage  # what the (fake) Gemini's usageMetadata reported
            assert usage is not None and (usage.input_tokens, usage.output_tokens) == (20, 10)
        names = [e.type for e in seen]
        assert "input_audio_buffer.speech_started" in names and "response.output_audio.delta" in names
        assert "response.output_audio_transcript.delta" in names
        assert "ask not what your country can do for you" in transcripts[0].lower()
        assert "gold ring" in transcripts[1].lower()
        deltas = [base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta"]
        assert all(len(d) <= 4800 for d in deltas)  # <= 100 ms at 24 kHz
        for t in timings:
            assert t["first_audio_sent_ms"] >= t["transcript_ms"] - 1
        print("timings", json.dumps(timings))


async def test_a_sentence_cut_at_its_pauses_is_heard_whole(tmp_path: Path, gemini: FakeGemini) -> None:
    """Endpointing capped at 700 ms ends JFK's turn at both of his 1 s pauses; each time he goes on
    before the answer is heard, so each part rejoins the one before: one transcript, one answer,
    the fragments deleted from the conversation and from the stored call."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'cut.db'}",
        preload_engines=True,
        stt_model_dir=MODEL_DIR,
        llm_engine="gemini",
        gemini_base_url=gemini.url,
        gemini_api_key=gemini.api_key,
        realtime_max_silence_ms=700,
    )
    with LiveServer(settings) as live:
        async with httpx.AsyncClient(trust_env=False) as http:
            r = await http.post(f"{live.url}/v1/auth/dev-login", json={"name": "pauser"})
        async with client(live, str(r.json()["access_token"])).realtime.connect(model="x") as conn:
            seen: list[Any] = []
            await english_call(conn, seen)
            body = np.concatenate([pcm("jfk.flac", 24000), np.zeros(24000 * 3, dtype=np.int16)])
            await stream(conn, body.tobytes(), 960)
            done = await until(conn, "response.done", seen, timeout=90)
            while done.response.status != "completed":
                done = await until(conn, "response.done", seen, timeout=90)
        deleted = [e.item_id for e in seen if e.type == "conversation.item.deleted"]
        stopped = [e.item_id for e in seen if e.type == "input_audio_buffer.speech_stopped"]
        assert len(stopped) >= 2 and deleted == stopped[:-1]  # every turn but the last was rejoined
        whole = heard_whole(seen).lower()
        assert "fellow" in whole and "ask not what your country can do for you" in whole
        assert whole.count("fellow") == 1  # the fragments' transcripts are gone
        # Each half-answer was stopped (one that had not begun leaves no trace); one answer completed.
        statuses = [e.response.status for e in seen if e.type == "response.done"]
        assert statuses[-1] == "completed" and set(statuses[:-1]) <= {"cancelled"}
        assert sum(e.type == "response.created" for e in seen) == len(statuses)
        db = str(settings.database_url).split("///", 1)[1]

        def user_turns() -> list[str]:
            with sqlite3.connect(db) as c:
                return [t for (t,) in c.execute("select text from turn where role = 'user'")]

        for _ in range(100):  # stored off the call's path, a moment later
            stored = await asyncio.to_thread(user_turns)
            if len(stored) == 1:
                break
            await asyncio.sleep(0.1)
        assert len(stored) == 1 and "ask not" in stored[0].lower()

        def habits() -> dict[str, Any]:
            with sqlite3.connect(db) as c:
                (raw,) = c.execute("select speaker_habits from user where dev_name = 'pauser'").fetchone()
                return dict(json.loads(raw))

        for _ in range(100):  # kept at the end of the call, for the next one
            learned = await asyncio.to_thread(habits)
            if learned.get("pauses_ms"):
                break
            await asyncio.sleep(0.1)
        # The pauses he made inside his turns are kept for his next call.
        assert learned["pauses_ms"] and min(learned["pauses_ms"]) >= 200

        # What a call learned starts the next one: say an earlier call saw him go on after a 1 s
        # pause that read finished; his next call's first turn already waits on that patience
        # (1.5 s, capped here at the 700 ms maximum), as its stored timings say. That turn is one
        # short sentence without a pause, so the call itself cannot have learned the patience.
        def remember() -> None:
            with sqlite3.connect(db) as c:
                learned["went_on_ms"] = [1000]
                c.execute(
                    "update user set speaker_habits = ? where dev_name = 'pauser'", (json.dumps(learned),)
                )

        await asyncio.to_thread(remember)
        async with client(live, str(r.json()["access_token"])).realtime.connect(model="x") as conn:
            seen = []
            await english_call(conn, seen)
            sentence = pcm("osr_us_000_0034_8k.wav", 24000)[: 24000 * 3]
            await stream(conn, np.concatenate([sentence, np.zeros(24000 * 3, np.int16)]).tobytes(), 960)
            await until(conn, "response.done", seen, timeout=90)

        def first_timings() -> dict[str, Any]:
            """The first user turn of the second call, once stored (not the first call's meanwhile)."""
            with sqlite3.connect(db) as c:
                rows = c.execute(
                    "select t.timings from turn t where t.role = 'user' and t.conversation_id = "
                    "(select id from conversation order by started_at desc limit 1) "
                    "order by t.started_at limit 1"
                ).fetchall()
                return dict(json.loads(rows[0][0])) if rows else {}

        for _ in range(100):
            timings = await asyncio.to_thread(first_timings)
            if "end_silence_ms" in timings:
                break
            await asyncio.sleep(0.1)
        assert timings.get("end_patience_ms") == 700


def heard_whole(events: list[Any]) -> str:
    """The caller's final transcripts, less the items the server deleted (turns that were rejoined)."""
    deleted = {e.item_id for e in events if e.type == "conversation.item.deleted"}
    return " ".join(
        e.transcript
        for e in events
        if e.type == "conversation.item.input_audio_transcription.completed" and e.item_id not in deleted
    )


async def test_beta_sdk_mulaw_8k(server: LiveServer, token: str) -> None:
    """Beta SDK with G.711 mu-law 8 kHz input: beta event names and a correct transcript."""
    async with client(server, token).beta.realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await until(conn, "session.created", seen)
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "input_audio_format": "g711_ulaw",
                    "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                },
            }
        )
        updated = await until(conn, "session.updated", seen)
        assert updated.session.input_audio_format == "g711_ulaw"
        audio = pcm("osr_us_000_0034_8k.wav", 8000)[: 8000 * 3]
        body = ULAW_8K.encode(np.concatenate([audio, np.zeros(8000 * 3, dtype=np.int16)]))
        await stream(conn, body, 160)
        await until(conn, "response.done", seen, timeout=90)
        completed = [e for e in seen if e.type == "conversation.item.input_audio_transcription.completed"]
        assert "gold ring" in completed[-1].transcript.lower()
        assert "response.audio.delta" in [e.type for e in seen]


async def test_text_turns_in_korean_without_turn_detection(server: LiveServer, token: str) -> None:
    """turn_detection null: a Korean text item and response.create give a spoken Korean reply."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await until(conn, "session.created", seen)
        await conn.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": None, "transcription": {"language": "ko"}}},
                },
            }
        )
        await until(conn, "session.updated", seen)
        await say(conn, "안녕하세요. 오늘 날씨가 좋네요.")
        done = await until(conn, "response.done", seen, timeout=60)
        assert done.response.status == "completed"
        assert any(e.type == "response.output_audio.delta" for e in seen)
        text = done.response.output[0].content[0].transcript
        assert any("\uac00" <= ch <= "\ud7a3" for ch in text)


async def test_malformed_events_get_errors_and_the_call_goes_on(server: LiveServer, token: str) -> None:
    """Bad JSON, an unknown type and bad base64 each get an error echoing event_id; the call continues."""
    async with websockets.connect(
        f"{server.ws_url}/v1/realtime?model=x", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["type"] == "error"
        await ws.send(json.dumps({"type": "bogus.event", "event_id": "evt_1"}))
        err = json.loads(await ws.recv())
        assert (
            err["type"] == "error"
            and err["error"]["event_id"] == "evt_1"
            and "bogus.event" in err["error"]["message"]
        )
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "!!!", "event_id": "evt_2"}))
        assert json.loads(await ws.recv())["error"]["event_id"] == "evt_2"
        await ws.send(json.dumps({"type": "session.update", "session": {"voice": "alloy"}}))
        assert json.loads(await ws.recv())["type"] == "session.updated"
        # The binary fast path: raw pcm16 frames are accepted without a reply.
        await ws.send(np.zeros(4800, dtype=np.int16).tobytes())
        await ws.send(json.dumps({"type": "response.cancel", "event_id": "evt_3"}))
        assert json.loads(await ws.recv())["error"]["code"] == "response_cancel_not_active"


async def test_bad_auth_and_foreign_origin_are_refused(server: LiveServer, token: str) -> None:
    """No token, a forged token, or a foreign Origin: the upgrade is refused with HTTP 403."""
    url = f"{server.ws_url}/v1/realtime"
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"},
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with websockets.connect(url, additional_headers=headers):
                pass
        assert info.value.response.status_code == 403
    # A browser on an allowed origin authenticates with the subprotocol, which is echoed.
    async with websockets.connect(
        url,
        additional_headers={"Origin": "http://good.example"},
        subprotocols=[Subprotocol(f"openai-insecure-api-key.{token}"), Subprotocol("realtime")],
    ) as ws:
        assert ws.subprotocol == f"openai-insecure-api-key.{token}"
        assert json.loads(await ws.recv())["type"] == "session.created"
    metrics = await asyncio.to_thread(lambda: httpx.get(f"{server.url}/metrics", trust_env=False).text)
    assert "silvertalk_turn_stage_ms" in metrics


def buzz(ms: int, rate: int = 24000) -> np.ndarray:
    """A loud voiced buzz (what VAD calls speech, what Whisper hears as no words)."""
    t = np.arange(ms * rate // 1000) / rate
    return (((t * 140) % 1.0 - 0.5) * 2 * 0.3 * 32767).astype(np.int16)


async def english_call(conn: Any, seen: list[Any]) -> None:
    await until(conn, "session.created", seen)
    await conn.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"}}},
            },
        }
    )
    await until(conn, "session.updated", seen)


async def first_reply_playing(conn: Any, seen: list[Any]) -> Any:
    """An English call whose first turn (a telephone sentence) is answered: its first audio delta."""
    await english_call(conn, seen)
    first = np.concatenate([pcm("osr_us_000_0034_8k.wav", 24000)[: 24000 * 3], np.zeros(24000 * 3, np.int16)])
    await stream(conn, first.tobytes(), 960)
    return await until(conn, "response.output_audio.delta", seen, timeout=60)


async def test_barge_in_cancels_and_truncate_keeps_heard_text(server: LiveServer, token: str) -> None:
    """Speaking over the reply: no audio after speech_started, response cancelled, truncate acknowledged."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        delta = await first_reply_playing(conn, seen)
        interrupt = np.concatenate([pcm("jfk.flac", 24000)[: 24000 * 3], np.zeros(24000 * 3, np.int16)])
        sender = asyncio.create_task(stream(conn, interrupt.tobytes(), 960, speed=1.0))
        await until(conn, "input_audio_buffer.speech_started", seen)
        mark = len(seen)
        done = await until(conn, "response.done", seen, timeout=30)
        assert done.response.status == "cancelled"
        # The server's own measure: speech_started out -> last reply audio byte out.
        assert 0 <= done.response.silvertalk_timings["barge_in_stop_ms"] <= 100
        assert not [
            e for e in seen[mark:] if e.type == "response.output_audio.delta" and e.item_id == delta.item_id
        ]
        heard = done.response.output[0].content[0].transcript
        assert LONG_EN.startswith(heard) and len(heard) < len(LONG_EN)
        await conn.send(
            {
                "type": "conversation.item.truncate",
                "item_id": delta.item_id,
                "content_index": 0,
                "audio_end_ms": 200,
            }
        )
        truncated = await until(conn, "conversation.item.truncated", seen)
        assert truncated.audio_end_ms == 200
        await sender
        done = await until(conn, "response.done", seen, timeout=60)
        finals = [
            e.transcript for e in seen if e.type == "conversation.item.input_audio_transcription.completed"
        ]
        assert "americans" in " ".join(finals).lower()


async def test_a_cough_during_the_reply_resumes_it(server: LiveServer, token: str) -> None:
    """A 100 ms knock during the reply pauses it briefly; the reply resumes and completes."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await first_reply_playing(conn, seen)
        await stream(conn, np.concatenate([buzz(100), np.zeros(24000, np.int16)]).tobytes(), 960, speed=1.0)
        done = await until(conn, "response.done", seen, timeout=60)
        names = [e.type for e in seen]
        started = names.index("input_audio_buffer.speech_started", names.index("response.created"))
        assert "response.output_audio.delta" in names[started:]
        assert done.response.status == "completed"
        assert done.response.output[0].content[0].transcript == LONG_EN


async def test_llm_failure_is_apologised_for_and_the_call_goes_on(
    server: LiveServer, token: str, gemini: FakeGemini
) -> None:
    """Gemini fails mid-stream: the caller hears the apology (status failed), and the next reply works."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await english_call(conn, seen)
        gemini.script(Reply.mid_stream_error("Well, let me think about", 503))
        for _ in range(2):
            await say(conn, "How are you?")
        failed = await until(conn, "response.done", seen)
        assert failed.response.status == "failed"
        assert "sorry" in failed.response.output[0].content[0].transcript.lower()
        ok = await until(conn, "response.done", seen)
        assert ok.response.status == "completed"


async def test_the_call_is_stored_as_a_conversation(server: LiveServer, token: str) -> None:
    """A call leaves a conversation with ended_at, a summary and user and assistant turns."""
    async with client(server, token).realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await english_call(conn, seen)
        await say(conn, "My grandson visited today.")
        await until(conn, "response.done", seen)
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Oops."}]}
        await conn.send({"type": "conversation.item.create", "item": {**item, "id": "item_oops"}})
        await conn.send({"type": "conversation.item.delete", "item_id": "item_oops"})
        await until(conn, "conversation.item.deleted", seen)
    db = server.settings.database_url.split("///", 1)[1]  # type: ignore[union-attr]

    def rows() -> tuple[Any, list[Any]]:
        with sqlite3.connect(db) as c:
            conv = c.execute(
                "select id, ended_at, summary from conversation order by started_at desc"
            ).fetchone()
            turns = c.execute(
                "select role, text, status from turn where conversation_id = ?", (conv[0],)
            ).fetchall()
            return conv, turns

    for _ in range(100):  # the server finishes the call a moment after the client hangs up
        conv, turns = await asyncio.to_thread(rows)
        if conv[1] is not None:
            break
        await asyncio.sleep(0.1)
    assert conv[1] is not None
    assert ("user", "My grandson visited today.", "completed") in turns
    assert not any(text == "Oops." for _, text, _ in turns)  # deleted by the client, gone from the store
    assert ("assistant", LONG_EN, "completed") in turns
    assert conv[2] == "My grandson visited today."


async def test_too_many_calls_and_idle_hangup(server: LiveServer, token: str) -> None:
    """A third concurrent call is refused with an error; an idle caller is asked, then hung up on."""
    s = server.settings
    saved = s.realtime_idle_prompt_s, s.realtime_idle_hangup_s
    s.realtime_idle_prompt_s, s.realtime_idle_hangup_s = 1.0, 2.5
    try:
        url = f"{server.ws_url}/v1/realtime"
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            websockets.connect(url, additional_headers=headers) as a,
            websockets.connect(url, additional_headers=headers) as b,
        ):
            for ws in (a, b):
                assert json.loads(await ws.recv())["type"] == "session.created"
            async with websockets.connect(url, additional_headers=headers) as c:
                err = json.loads(await c.recv())
                assert err["type"] == "error" and err["error"]["code"] == "too_many_calls"
            types: list[str] = []
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    types.append(json.loads(await asyncio.wait_for(a.recv(), 30))["type"])
            assert "response.output_audio_transcript.delta" in types and types[-1] == "silvertalk.call.ending"
    finally:
        s.realtime_idle_prompt_s, s.realtime_idle_hangup_s = saved


async def test_slow_speakers_long_pause_keeps_the_turn_over_binary_frames(
    server: LiveServer, token: str
) -> None:
    """A slow speaker: after a 660 ms pause, their 900 ms mid-sentence pause does not end the turn.

    JFK's own pauses (VAD): 1.0 s after "Americans," (shortened here to 660 ms) and about 0.9 s
    after "ask not". Sent as raw binary pcm16 frames (the fast path).
    """
    jfk = pcm("jfk.flac", 24000)
    at = [int(t * 24000) for t in (2.61, 2.95, 4.90, 4.98)]  # two cuts inside the silences
    slow = np.concatenate([jfk[: at[0]], jfk[at[1] : at[2]], jfk[at[3] :], np.zeros(24000 * 3, np.int16)])
    async with websockets.connect(
        f"{server.ws_url}/v1/realtime?model=x", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"input_audio_transcription": {"language": "en"}}}
            )
        )
        assert json.loads(await ws.recv())["type"] == "session.updated"
        types: list[dict[str, Any]] = []

        async def read() -> None:
            while True:
                event = json.loads(await ws.recv())
                types.append(event)
                if event["type"] == "response.done":
                    return

        reader = asyncio.create_task(read())
        body = slow.tobytes()
        for i in range(0, len(body), 960):
            await ws.send(body[i : i + 960])
            await asyncio.sleep(0.005)
        await asyncio.wait_for(reader, 90)
    stopped = [e for e in types if e["type"] == "input_audio_buffer.speech_stopped"]
    finals = [e["transcript"] for e in types if e["type"].endswith("input_audio_transcription.completed")]
    assert len(stopped) == 1 and len(finals) == 1, (stopped, finals)
    assert "americans" in finals[0].lower() and "your country" in finals[0].lower()
