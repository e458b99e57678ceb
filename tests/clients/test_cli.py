"""The command-line client against a live server, and its sans-I/O call log."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

from clients.cli import main_async
from clients.realtime_client import CallLog, RealtimeClient, session_config, stream_pcm
from tests.clients.conftest import JFK, JFK_WORDS
from tests.conftest import ROOT, LiveServer


def test_call_log_waits_for_the_reply_to_the_last_turn() -> None:
    """A call counts as answered only once the last committed turn's response is done."""
    log = CallLog()
    log.feed({"type": "input_audio_buffer.speech_started", "item_id": "u1"})
    log.feed({"type": "input_audio_buffer.speech_stopped", "item_id": "u1"})
    log.feed({"type": "input_audio_buffer.committed", "item_id": "u1"})
    assert not log.answered
    delta = {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u1", "delta": "And so"}
    log.feed(delta)
    log.feed(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "transcript": "And so my fellow Americans",
        }
    )
    log.feed({"type": "response.created", "response": {"id": "r1"}})
    log.feed(
        {
            "type": "response.output_audio.delta",
            "response_id": "r1",
            "item_id": "a1",
            "delta": base64.b64encode(b"\x01\x00" * 10).decode(),
        }
    )
    log.feed({"type": "response.output_audio_transcript.delta", "response_id": "r1", "delta": "Hello"})
    assert not log.answered
    log.feed(
        {
            "type": "response.done",
            "response": {
                "id": "r1",
                "status": "completed",
                "silvertalk_timings": {"first_audio_ms": 412.5, "stage": "x", "nested": {"stt_ms": 90}},
            },
        }
    )
    assert log.answered
    assert log.user_turns["u1"].partial == "And so"
    assert log.user_turns["u1"].transcript == "And so my fellow Americans"
    reply = log.replies["r1"]
    assert (reply.text, reply.item_id, reply.status, len(reply.audio)) == ("Hello", "a1", "completed", 20)
    assert reply.timings == {"first_audio_ms": 412.5, "nested.stt_ms": 90.0}
    log.feed({"type": "input_audio_buffer.speech_started", "item_id": "u2"})
    assert not log.answered


def test_session_config_is_the_ga_shape() -> None:
    """The session the clients send is the GA shape with pcm16 at 24 kHz and the chosen language."""
    session = session_config("en", 0.9)
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["input"]["transcription"]["language"] == "en"
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["output"]["speed"] == 0.9


async def test_stream_pcm_paces_frames_in_real_time() -> None:
    """With realtime pacing, 400 ms of audio leaves as ten 40 ms appends spread over about 400 ms."""
    from websockets.asyncio.server import ServerConnection, serve

    arrivals: list[tuple[float, dict[str, object]]] = []
    headers: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        headers.append(ws.request.headers["Authorization"] if ws.request else "")
        async for message in ws:
            arrivals.append((time.monotonic(), json.loads(message)))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with RealtimeClient.connect(f"http://127.0.0.1:{port}", "tok") as client:
            start = time.monotonic()
            await stream_pcm(client, bytes(24_000 * 2 * 400 // 1000), realtime=True, frame_ms=40)
            paced = time.monotonic() - start
            await stream_pcm(client, bytes(24_000 * 2 * 400 // 1000), realtime=False, frame_ms=40)
            fast = time.monotonic() - start - paced
        await asyncio.sleep(0.1)
    assert headers == ["Bearer tok"]
    assert len(arrivals) == 20
    assert all(e["type"] == "input_audio_buffer.append" for _, e in arrivals)
    assert {len(base64.b64decode(str(e["audio"]))) for _, e in arrivals} == {1920}
    assert 0.34 <= paced < 0.8 and fast < 0.2, (paced, fast)


async def test_cli_call_prints_transcript_and_saves_reply(live_server: LiveServer, tmp_path: Path) -> None:
    """Streaming jfk.flac through the CLI prints its words, a reply and timings, and saves the reply WAV."""
    out = tmp_path / "reply.wav"
    printed = io.StringIO()
    status = await main_async(
        [
            "call",
            "--wav",
            str(JFK),
            "--out",
            str(out),
            "--url",
            live_server.url,
            "--name",
            "cli-test",
            "--language",
            "en",
            "--timeout",
            "90",
        ],
        out=printed,
    )
    text = printed.getvalue()
    assert status == 0, text
    you = [line.lower() for line in text.splitlines() if line.startswith("[you]")]
    assert you and all(word in " ".join(you) for word in JFK_WORDS), text
    assert "[companion]" in text and "[reply completed]" in text, text
    with wave.open(str(out)) as w:
        assert w.getframerate() == 24000 and w.getnchannels() == 1
        assert w.getnframes() > 24000 // 2, text  # at least half a second of reply audio


def test_cli_entry_point_refuses_a_bad_token(live_server: LiveServer) -> None:
    """`python -m clients.cli` with a bad token exits 1 and says the token was refused."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.cli",
            "call",
            "--wav",
            str(JFK),
            "--url",
            live_server.url,
            "--token",
            "not-a-token",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused" in result.stdout
