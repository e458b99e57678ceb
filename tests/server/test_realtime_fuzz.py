"""The realtime gateway under bad input over a real socket: refused with an `error`, the call goes on.

One live server with fast engines (the benchmark's instant STT, the offline companion, espeak-ng):
regression tests for each defect of issue 10 the fuzzer class covers, then the seeded fuzz run
(`bench.fuzz`, 2,000 messages).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from bench import engines
from bench.fuzz import fuzz_call
from bench.fuzzgen import Fuzzer
from server.realtime.protocol import ProtocolError, parse
from tests.conftest import LiveServer, make_settings

LIMIT = 64 * 1024  # realtime_max_message_bytes here: big messages stay cheap


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engines.register()  # test engines that implement the real protocols, by settings name
    tmp = tmp_path_factory.mktemp("fuzz")
    settings = make_settings(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}",
        preload_engines=True,
        stt_engine=engines.NAME,
        llm_engine="offline",
        tts_engine="espeak",
        realtime_max_message_bytes=LIMIT,
        realtime_idle_prompt_s=3600.0,
        realtime_idle_hangup_s=7200.0,
    )
    with LiveServer(settings) as live:
        yield live


def login(server: LiveServer, name: str) -> str:
    r = httpx.post(f"{server.url}/v1/auth/dev-login", json={"name": name}, trust_env=False)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture
async def call(server: LiveServer) -> AsyncIterator[ClientConnection]:
    url = f"{server.ws_url}/v1/realtime?model=x"
    headers = {"Authorization": f"Bearer {login(server, 'fuzz-kim')}"}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        assert (await next_event(ws))["type"] == "session.created"
        yield ws


async def next_event(ws: ClientConnection, kind: str | None = None) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if kind is None or event["type"] == kind:
            return event


async def refused(ws: ClientConnection, raw: str) -> dict[str, Any]:
    """Send a raw text frame that must be refused; returns the error object."""
    await ws.send(raw)
    event = await next_event(ws)
    assert event["type"] == "error", event
    return dict(event["error"])


async def session(ws: ClientConnection) -> dict[str, Any]:
    """The session as it stands (an empty update echoes it)."""
    await ws.send(json.dumps({"type": "session.update", "session": {}}))
    return dict((await next_event(ws, "session.updated"))["session"])


async def spoken_answer(ws: ClientConnection) -> None:
    """A text turn gets a reply that speaks: the call still works. (Its first audio is enough; the
    reply is then cancelled rather than waited for in real time.)"""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "How are you?"}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"}))
    delta = await next_event(ws, "response.output_audio.delta")
    assert base64.b64decode(delta["delta"])
    await ws.send(json.dumps({"type": "response.cancel"}))
    assert (await next_event(ws, "response.done"))["response"]["status"] in ("cancelled", "completed")


def update(**session: Any) -> str:
    return json.dumps({"type": "session.update", "event_id": "evt_s", "session": session})


async def test_a_non_integer_content_index_is_refused(call: ClientConnection) -> None:
    """conversation.item.truncate with content_index "x", 1.5 or [] gets an error; the call goes on."""
    for index in ("x", 1.5, []):
        event = {"type": "conversation.item.truncate", "event_id": "evt_t", "item_id": "item_1"}
        err = await refused(call, json.dumps(event | {"content_index": index, "audio_end_ms": 10}))
        assert err["param"] == "content_index" and err["event_id"] == "evt_t"
    await spoken_answer(call)


async def test_session_shapes_that_are_not_objects_are_refused(call: ClientConnection) -> None:
    """audio.input, audio or the session itself not an object: an error naming the field."""
    for raw, param in (
        (update(audio={"input": "x"}), "session.audio.input"),
        (update(audio={"input": []}), "session.audio.input"),
        (update(audio=5), "session.audio"),
        (update(audio={"output": {"format": "audio/pcm"}}), "session.audio.output.format"),
        (json.dumps({"type": "session.update", "session": "x"}), "session"),
    ):
        err = await refused(call, raw)
        assert err["param"] == param, err
    await spoken_answer(call)


async def test_huge_numbers_are_refused(call: ClientConnection) -> None:
    """prefix_padding_ms 1e300 or 10**400, silence 1e9: refused; the session keeps its values."""
    before = await session(call)
    for td in ({"prefix_padding_ms": 1e300}, {"prefix_padding_ms": 10**400}, {"silence_duration_ms": 10**9}):
        err = await refused(call, update(turn_detection=td))
        assert err["param"].startswith("session.turn_detection.")
    assert await session(call) == before
    await spoken_answer(call)


async def test_speed_nan_and_infinity_are_refused_and_the_voice_keeps_its_speed(
    call: ClientConnection,
) -> None:
    """Raw NaN, Infinity and out-of-range speeds are refused; replies still speak."""
    for raw in ("NaN", "Infinity", "-Infinity", "1e300", "0", "true", '"1.0"'):
        frame = '{"type":"session.update","event_id":"evt_v","session":{"audio":{"output":{"speed":%s}}}}'
        err = await refused(call, frame % raw)
        assert err["param"] == "session.audio.output.speed" and err["event_id"] == "evt_v"
    assert (await session(call))["audio"]["output"]["speed"] == 1.0
    await spoken_answer(call)


async def test_unsupported_languages_are_refused(call: ClientConnection) -> None:
    """Language "xx", 10,000 characters or a path: refused, the language stays; "" resets it."""
    await call.send(update(audio={"input": {"transcription": {"language": "en"}}}))
    await next_event(call, "session.updated")
    for lang in ("xx", "x" * 10_000, "../../etc/passwd", "ko\x00"):
        err = await refused(call, update(audio={"input": {"transcription": {"language": lang}}}))
        assert "language" in err["message"] and len(err["message"]) < 300
    assert (await session(call))["audio"]["input"]["transcription"]["language"] == "en"
    await spoken_answer(call)
    await call.send(update(audio={"input": {"transcription": {"language": ""}}}))
    assert (await next_event(call, "session.updated"))["session"]["audio"]["input"]["transcription"][
        "language"
    ] is None


async def test_an_update_with_one_bad_value_changes_nothing(call: ClientConnection) -> None:
    """Atomic updates: a good voice and instructions next to a bad speed leave the session as it was."""
    before = await session(call)
    bad = update(instructions="Be brief.", audio={"output": {"voice": "marin", "speed": float("nan")}})
    await refused(call, bad)
    assert await session(call) == before


async def test_an_oversized_message_is_explained_before_the_close(call: ClientConnection) -> None:
    """A message over the limit: an `error` event saying so, then close 1009 with the reason."""
    await call.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (LIMIT + 4)}))
    err = (await next_event(call))["error"]
    assert err["code"] == "message_too_large" and str(LIMIT) in err["message"]
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await next_event(call)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert str(LIMIT) in closed.value.rcvd.reason


def padded(size: int, char: str) -> str:
    """A conversation.item.create of exactly `size` UTF-8 bytes, padded with `char`."""
    head = '{"type":"conversation.item.create","item":{"content":[{"type":"input_text","text":"'
    tail = '"}]}}'
    room = size - len((head + tail).encode())
    width = len(char.encode())
    return head + char * (room // width) + "x" * (room % width) + tail


async def test_the_limit_counts_utf8_bytes_not_characters(call: ClientConnection) -> None:
    """A message of exactly the limit is read (here refused for its text length, the call goes on);
    one a byte over it in Korean, fewer characters than the limit, is too large."""
    err = await refused(call, padded(LIMIT, "가"))
    assert err["param"] == "item.content[0].text"
    await spoken_answer(call)
    over = padded(LIMIT + 1, "가")
    assert len(over) < LIMIT
    await call.send(over)
    assert (await next_event(call))["error"]["code"] == "message_too_large"


async def test_a_binary_frame_over_the_limit_is_explained_too(call: ClientConnection) -> None:
    """The binary audio path has the same limit and the same explanation."""
    await call.send(bytes(LIMIT + 2))
    assert (await next_event(call))["error"]["code"] == "message_too_large"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await next_event(call)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_the_fuzzer_is_reproducible_and_its_labels_agree_with_the_parser() -> None:
    """Same seed, same stream; each text message it calls bad is refused by parse, each other one parses."""
    fuzzer = Fuzzer(11)
    for n in range(3000):
        msg = fuzzer.message(n)
        assert msg == Fuzzer(11).message(n)
        if isinstance(msg.data, bytes):
            continue
        if msg.bad:
            with pytest.raises(ProtocolError) as info:
                parse(msg.data)
            assert info.value.event_id == msg.event_id
        else:
            assert parse(msg.data).event_id == msg.event_id


async def test_fuzzing_a_call_with_2000_messages(server: LiveServer, tmp_path: Path) -> None:
    """2,000 seeded valid, malformed and hostile messages: the call holds, each bad one gets an error,
    a text turn is still answered in speech, and another user's call hears nothing of it."""
    report = await fuzz_call(
        server.ws_url, login(server, "fuzz-a"), login(server, "fuzz-b"), messages=2000, seed=7
    )
    assert report.failures == []
    assert report.sent == 2000 and report.bad > 800 and report.errors >= report.bad
    assert report.answered and report.other_answered
    assert {"binary", "not json", "unknown type", "hostile event_id", "hostile session.update"} <= set(
        report.by_kind
    )
