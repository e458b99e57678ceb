"""A small asyncio client for Silvertalk's `/v1/realtime` (the OpenAI Realtime protocol).

Shared by the command-line client and the benchmark. Three layers, usable on their own:

- `login()` and `load_pcm()`: get an access token and turn any audio file into pcm16 at 24 kHz.
- `RealtimeClient`: one WebSocket connection; typed helpers for the client events, and an async
  iterator over the server events (parsed JSON dicts, exactly as sent).
- `CallLog`: a sans-I/O record of a call. Feed it every server event; it collects per-turn
  transcripts, reply text, reply audio and timings, and says when every user turn was answered.

`stream_pcm()` sends audio in fixed frames, at real-time pace or as fast as the socket takes it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

PCM_RATE = 24_000  # the protocol's pcm16 rate: 24 kHz mono little-endian
BYTES_PER_MS = PCM_RATE * 2 // 1000


class RealtimeClientError(Exception):
    """Login or connection failed; the message says what the server answered."""


async def login(base_url: str, *, name: str | None = None, token: str | None = None) -> str:
    """Return an access token: `token` as given (checked against /v1/users/me), else a dev login as `name`."""
    try:
        return await _login(base_url, name, token)
    except httpx.HTTPError as e:
        raise RealtimeClientError(f"cannot reach {base_url}: {type(e).__name__}: {e}") from e


async def _login(base_url: str, name: str | None, token: str | None) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False) as http:
        if token is None:
            r = await http.post("/v1/auth/dev-login", json={"name": name or "cli"})
            if r.status_code != 200:
                raise RealtimeClientError(f"dev login failed: HTTP {r.status_code} {r.text[:200]}")
            return str(r.json()["access_token"])
        r = await http.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        if r.status_code in (401, 403):
            raise RealtimeClientError(f"the token was refused: HTTP {r.status_code}")
        return token


def load_pcm(path: str | Path, rate: int = PCM_RATE) -> bytes:
    """Decode any audio file (WAV, FLAC, MP3, ...) to mono pcm16 at `rate`. Blocking: run it in a thread."""
    from faster_whisper import decode_audio  # lazy: pulls in av and ctranslate2

    samples = decode_audio(str(path), sampling_rate=rate)
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def session_config(
    language: str = "ko", speed: float = 1.0, *, silence_duration_ms: int | None = None
) -> dict[str, Any]:
    """The GA `session` for `session.update`: pcm16 24 kHz both ways, server VAD, transcription language."""
    turn_detection: dict[str, Any] = {
        "type": "server_vad",
        "create_response": True,
        "interrupt_response": True,
    }
    if silence_duration_ms is not None:
        turn_detection["silence_duration_ms"] = silence_duration_ms
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": PCM_RATE},
                "transcription": {"language": language},
                "turn_detection": turn_detection,
            },
            "output": {"format": {"type": "audio/pcm", "rate": PCM_RATE}, "speed": speed},
        },
    }


def realtime_url(base_url: str, model: str = "silvertalk") -> str:
    """http(s)://host[:port] -> ws(s)://host[:port]/v1/realtime?model=..."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme in ("https", "wss") else "ws"
    return urlunsplit((scheme, parts.netloc, "/v1/realtime", f"model={model}", ""))


class RealtimeClient:
    """One realtime call. Build it with `RealtimeClient.connect(...)`; iterate it for server events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        token: str,
        *,
        model: str = "silvertalk",
        beta: bool = False,
        origin: str | None = None,
        open_timeout: float = 20.0,
    ) -> AsyncIterator[RealtimeClient]:
        """Open the socket with `Authorization: Bearer`; `beta` adds `OpenAI-Beta: realtime=v1`.

        Raises RealtimeClientError when the upgrade is refused (bad token, foreign Origin).
        """
        headers = {"Authorization": f"Bearer {token}"}
        if beta:
            headers["OpenAI-Beta"] = "realtime=v1"
        try:
            ws = await connect(
                realtime_url(base_url, model),
                additional_headers=headers,
                origin=origin,  # type: ignore[arg-type]
                open_timeout=open_timeout,
                max_size=16 * 1024 * 1024,
                proxy=None,
            )
        except Exception as e:  # websockets raises InvalidStatus, OSError, TimeoutError...
            status = getattr(getattr(e, "response", None), "status_code", None)
            detail = f"HTTP {status}" if status else f"{type(e).__name__}: {e}"
            raise RealtimeClientError(f"could not open {realtime_url(base_url, model)}: {detail}") from e
        try:
            yield cls(ws)
        finally:
            await ws.close()

    async def send(self, event_type: str, **fields: Any) -> None:
        """Send one client event; an `event_id` is added."""
        await self.ws.send(
            json.dumps({"type": event_type, "event_id": f"evt_cli_{next(self._ids)}", **fields})
        )

    async def update_session(self, session: Mapping[str, Any]) -> None:
        await self.send("session.update", session=dict(session))

    async def append(self, pcm: bytes) -> None:
        """Append input audio (in the session's input format) as base64 JSON."""
        await self.send("input_audio_buffer.append", audio=base64.b64encode(pcm).decode("ascii"))

    async def commit(self) -> None:
        await self.send("input_audio_buffer.commit")

    async def clear(self) -> None:
        await self.send("input_audio_buffer.clear")

    async def create_response(self, **response: Any) -> None:
        await self.send("response.create", **({"response": response} if response else {}))

    async def cancel_response(self) -> None:
        await self.send("response.cancel")

    async def truncate(self, item_id: str, audio_end_ms: int, content_index: int = 0) -> None:
        await self.send(
            "conversation.item.truncate",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    async def recv(self) -> dict[str, Any]:
        """The next server event (wrap in `asyncio.timeout` to bound it). Raises ConnectionClosed."""
        return dict(json.loads(await self.ws.recv()))

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Server events until the socket closes."""
        async for raw in self.ws:
            yield dict(json.loads(raw))


async def stream_pcm(
    client: RealtimeClient,
    pcm: bytes,
    *,
    realtime: bool,
    frame_ms: int = 40,
    trailing_silence_ms: int = 0,
) -> None:
    """Send `pcm` (pcm16 24 kHz) plus trailing silence in `frame_ms` frames.

    With `realtime` each frame leaves on an absolute schedule (no drift); otherwise as fast as the
    socket takes them, yielding to the loop between frames so received events are handled.
    """
    step = frame_ms * BYTES_PER_MS
    audio = pcm + bytes(trailing_silence_ms * BYTES_PER_MS)
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(audio), step)):
        if realtime:
            delay = start + n * frame_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)
        await client.append(audio[offset : offset + step])


@dataclass
class Reply:
    """One response: what the companion said, its audio and the server's timings."""

    response_id: str
    item_id: str | None = None
    text: str = ""
    audio: bytearray = field(default_factory=bytearray)
    status: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass
class UserTurn:
    """One user turn (an input audio item): the live partial and the final transcript."""

    item_id: str
    partial: str = ""
    transcript: str | None = None


def numeric_fields(value: Any) -> dict[str, float]:
    """The numeric fields of a timings object (nested dicts flattened with dots); the rest is ignored."""
    out: dict[str, float] = {}
    if isinstance(value, Mapping):
        for key, v in value.items():
            if isinstance(v, bool):
                continue
            if isinstance(v, int | float):
                out[str(key)] = float(v)
            elif isinstance(v, Mapping):
                out.update({f"{key}.{k}": n for k, n in numeric_fields(v).items()})
    return out


TIMINGS_KEYS = ("silvertalk_timings", "timings")


def timings_of(event: Mapping[str, Any]) -> dict[str, float]:
    """Per-turn timings from `response.done`: Silvertalk's extra field in `response` (or top-level)."""
    response = event.get("response") or {}
    for where in (response, event):
        for key in TIMINGS_KEYS:
            if isinstance(where.get(key), Mapping):
                return numeric_fields(where[key])
    return {}


class CallLog:
    """Sans-I/O record of a call: `feed()` every server event, then read turns, replies and errors."""

    def __init__(self) -> None:
        self.user_turns: dict[str, UserTurn] = {}
        self.replies: dict[str, Reply] = {}
        self.errors: list[dict[str, Any]] = []
        self.session: dict[str, Any] = {}
        self.speech_active = False
        self.in_progress: set[str] = set()
        self.commits = 0  # user turns committed so far
        self._seq = 0
        self._last_commit = 0
        self._last_done = 0

    def _reply(self, event: Mapping[str, Any]) -> Reply:
        rid = str(event.get("response_id") or event.get("response", {}).get("id") or "")
        reply = self.replies.setdefault(rid, Reply(response_id=rid))
        if reply.item_id is None and event.get("item_id"):
            reply.item_id = str(event["item_id"])
        return reply

    def _user(self, event: Mapping[str, Any]) -> UserTurn:
        iid = str(event.get("item_id") or "")
        return self.user_turns.setdefault(iid, UserTurn(item_id=iid))

    def feed(self, event: Mapping[str, Any]) -> None:
        """Record one server event (GA and beta names alike)."""
        self._seq += 1
        kind = event.get("type", "")
        if kind in ("session.created", "session.updated"):
            self.session = dict(event.get("session") or {})
        elif kind == "input_audio_buffer.speech_started":
            self.speech_active = True
        elif kind == "input_audio_buffer.speech_stopped":
            self.speech_active = False
        elif kind == "input_audio_buffer.committed":
            self.speech_active = False
            self._last_commit = self._seq
            self.commits += 1
            self._user(event)
        elif kind == "conversation.item.input_audio_transcription.delta":
            self._user(event).partial += str(event.get("delta", ""))
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._user(event).transcript = str(event.get("transcript", ""))
        elif kind == "conversation.item.deleted":
            # A turn the server joined into the next (the caller was only pausing), or one we deleted.
            self.user_turns.pop(str(event.get("item_id") or ""), None)
        elif kind == "response.created":
            self.in_progress.add(self._reply(event).response_id)
        elif kind in ("response.output_audio.delta", "response.audio.delta"):
            self._reply(event).audio += base64.b64decode(event.get("delta", ""))
        elif kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            self._reply(event).text += str(event.get("delta", ""))
        elif kind == "response.done":
            reply = self._reply(event)
            response = event.get("response") or {}
            reply.status = response.get("status")
            reply.usage = dict(response.get("usage") or {})
            reply.timings = timings_of(event)
            self.in_progress.discard(reply.response_id)
            self._last_done = self._seq
        elif kind == "error":
            self.errors.append(dict(event.get("error") or {}))

    @property
    def answered(self) -> bool:
        """True when the caller is quiet, no reply is running and the last user turn got a reply."""
        return (
            not self.speech_active
            and not self.in_progress
            and self._last_commit > 0
            and self._last_done > self._last_commit
        )

    @property
    def done_replies(self) -> list[Reply]:
        return [r for r in self.replies.values() if r.status is not None]

    @property
    def reply_audio(self) -> bytes:
        """Every reply's audio, in order (pcm16 at the session's output rate)."""
        return b"".join(bytes(r.audio) for r in self.replies.values())
