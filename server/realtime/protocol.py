"""The OpenAI Realtime wire protocol: session shapes in, server events out. No sockets here.

`parse_session` accepts both the beta session shape (`input_audio_format`, `turn_detection`, ...)
and the GA shape (`audio.input.format`, `audio.input.turn_detection`, ...). `Encoder` turns the
core's `pipeline.events` into JSON server events; it always uses the GA event names
(`response.output_audio.delta`, ...) and, for clients that connected with `OpenAI-Beta: realtime=v1`
(the beta SDK), the beta names instead (`response.audio.delta`, ...). Every server event carries an
`event_id`; `response.done` carries our per-turn timings in `response.silvertalk_timings`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from pipeline import events as ev
from pipeline.audio import AudioFormat

FORMATS = {"pcm16": ("pcm16", 24000), "g711_ulaw": ("g711_ulaw", 8000), "g711_alaw": ("g711_alaw", 8000)}
GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


class ProtocolError(ValueError):
    """A malformed or unsupported client event; answered with an `error` event, the call goes on."""


@dataclass(slots=True)
class Session:
    """The session as the client sees it (what session.created/updated echo)."""

    id: str = field(default_factory=lambda: f"sess_{secrets.token_hex(10)}")
    model: str = "silvertalk"
    instructions: str = ""
    voice: str = "default"
    input_format: AudioFormat = field(default_factory=lambda: AudioFormat("pcm16", 24000))
    output_format: AudioFormat = field(default_factory=lambda: AudioFormat("pcm16", 24000))
    language: str | None = None
    transcription_model: str = "whisper-1"
    turn_detection: dict[str, Any] | None = field(
        default_factory=lambda: {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "create_response": True,
            "interrupt_response": True,
        }
    )
    speed: float | None = None
    modalities: list[str] = field(default_factory=lambda: ["audio", "text"])

    def to_json(self, ga: bool) -> dict[str, Any]:
        transcription = {"model": self.transcription_model, "language": self.language}
        if not ga:
            return {
                "id": self.id,
                "object": "realtime.session",
                "model": self.model,
                "modalities": self.modalities,
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": self.input_format.encoding,
                "output_audio_format": self.output_format.encoding,
                "input_audio_transcription": transcription,
                "turn_detection": self.turn_detection,
            }
        return {
            "type": "realtime",
            "id": self.id,
            "object": "realtime.session",
            "model": self.model,
            "output_modalities": ["audio"],
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": _ga_format(self.input_format),
                    "transcription": transcription,
                    "turn_detection": self.turn_detection,
                },
                "output": {
                    "format": _ga_format(self.output_format),
                    "voice": self.voice,
                    "speed": self.speed or 1.0,
                },
            },
        }


def _ga_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.encoding == "pcm16":
        return {"type": "audio/pcm", "rate": fmt.rate}
    return {"type": "audio/pcmu" if fmt.encoding == "g711_ulaw" else "audio/pcma"}


def _format(value: Any) -> AudioFormat:
    if isinstance(value, str):
        if value not in FORMATS:
            raise ProtocolError(f"Unsupported audio format '{value}'; use pcm16, g711_ulaw or g711_alaw.")
        return AudioFormat(*FORMATS[value])
    if isinstance(value, dict):
        kind = value.get("type")
        if kind not in GA_FORMATS:
            raise ProtocolError(
                f"Unsupported audio format type '{kind}'; use audio/pcm, audio/pcmu or audio/pcma."
            )
        if GA_FORMATS[kind] != "pcm16":
            return AudioFormat(GA_FORMATS[kind], 8000)
        rate = value.get("rate", 24000)
        if rate not in (8000, 16000, 24000, 48000):
            raise ProtocolError(f"Unsupported audio/pcm rate {rate}; use 16000 or 24000.")
        return AudioFormat("pcm16", int(rate))
    raise ProtocolError("An audio format must be a string or an object with a 'type'.")


def _turn_detection(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("turn_detection must be an object or null.")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError(f"Unsupported turn_detection type '{kind}'.")
    out = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
    }
    for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
        if key in value and value[key] is not None:
            if not isinstance(value[key], int | float) or value[key] < 0:
                raise ProtocolError(f"turn_detection.{key} must be a non-negative number.")
            out[key] = value[key]
    for key in ("create_response", "interrupt_response"):
        if key in value and value[key] is not None:
            out[key] = bool(value[key])
    return out


def apply_session(session: Session, data: Any) -> None:
    """Apply a session.update payload in either shape. Raises ProtocolError on bad values."""
    if not isinstance(data, dict):
        raise ProtocolError("session.update needs a 'session' object.")
    if isinstance(data.get("instructions"), str):
        session.instructions = data["instructions"]
    if isinstance(data.get("voice"), str):
        session.voice = data["voice"]
    # Beta shape.
    if "input_audio_format" in data:
        session.input_format = _format(data["input_audio_format"])
    if "output_audio_format" in data:
        session.output_format = _format(data["output_audio_format"])
    if "turn_detection" in data:
        session.turn_detection = _turn_detection(data["turn_detection"])
    if isinstance(data.get("input_audio_transcription"), dict):
        _transcription(session, data["input_audio_transcription"])
    if isinstance(data.get("modalities"), list):
        session.modalities = [str(m) for m in data["modalities"]]
    # GA shape.
    audio = data.get("audio")
    if isinstance(audio, dict):
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        if "format" in inp:
            session.input_format = _format(inp["format"])
        if "turn_detection" in inp:
            session.turn_detection = _turn_detection(inp["turn_detection"])
        if isinstance(inp.get("transcription"), dict):
            _transcription(session, inp["transcription"])
        if "format" in out:
            session.output_format = _format(out["format"])
        if isinstance(out.get("voice"), str):
            session.voice = out["voice"]
        if isinstance(out.get("speed"), int | float):
            session.speed = float(out["speed"])


def _transcription(session: Session, value: dict[str, Any]) -> None:
    if isinstance(value.get("language"), str) and value["language"]:
        session.language = value["language"]
    if isinstance(value.get("model"), str):
        session.transcription_model = value["model"]


def event_id() -> str:
    return f"event_{secrets.token_hex(10)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Encoder:
    """Builds the JSON server events for one call, in GA names or beta names."""

    def __init__(self, *, beta: bool, session: Session) -> None:
        self.beta, self.session = beta, session  # audio goes out in session.output_format
        self._audio = "response.audio" if beta else "response.output_audio"
        self._transcript = "response.audio_transcript" if beta else "response.output_audio_transcript"
        self._text: dict[str, list[str]] = {}

    def session_event(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "event_id": event_id(), "session": self.session.to_json(ga=not self.beta)}

    def error(
        self,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        event_id_: str | None = None,
        param: str | None = None,
    ) -> dict[str, Any]:
        return {
            "type": "error",
            "event_id": event_id(),
            "error": {"type": type, "code": code, "message": message, "param": param, "event_id": event_id_},
        }

    def encode(self, e: ev.OutputEvent) -> list[dict[str, Any]]:
        """The server events for one core event (several for response start and end)."""
        out = self._encode(e)
        for o in out:
            o.setdefault("event_id", event_id())
        return out

    def _encode(self, e: ev.OutputEvent) -> list[dict[str, Any]]:
        if isinstance(e, ev.SpeechStarted):
            return [
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": e.audio_start_ms,
                    "item_id": e.item_id,
                }
            ]
        if isinstance(e, ev.SpeechStopped):
            return [
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": e.audio_end_ms,
                    "item_id": e.item_id,
                }
            ]
        if isinstance(e, ev.InputCommitted):
            return [
                {
                    "type": "input_audio_buffer.committed",
                    "previous_item_id": e.previous_item_id,
                    "item_id": e.item_id,
                }
            ]
        if isinstance(e, ev.InputCleared):
            return [{"type": "input_audio_buffer.cleared"}]
        if isinstance(e, ev.ItemCreated):
            content: dict[str, Any] = {"type": e.content_type}
            if e.content_type == "input_audio":
                content["transcript"] = None
            else:
                content["text"] = e.text
            item = {
                "id": e.item_id,
                "object": "realtime.item",
                "type": "message",
                "status": "completed",
                "role": e.role,
                "content": [content],
            }
            return self._item_added(item, e.previous_item_id)
        if isinstance(e, ev.TranscriptDelta):
            return [
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": e.item_id,
                    "content_index": 0,
                    "delta": e.delta,
                }
            ]
        if isinstance(e, ev.TranscriptFinal):
            return [
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": e.item_id,
                    "content_index": 0,
                    "transcript": e.text,
                }
            ]
        if isinstance(e, ev.TranscriptFailed):
            return [
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": e.item_id,
                    "content_index": 0,
                    "error": {"type": "transcription_error", "message": e.message},
                }
            ]
        if isinstance(e, ev.ResponseStarted):
            self._text[e.response_id] = []
            item = self._assistant_item(e.item_id, "in_progress", None)
            part = {"type": "audio", "transcript": ""}
            return [
                {"type": "response.created", "response": self._response(e.response_id, "in_progress", [])},
                {
                    "type": "response.output_item.added",
                    "response_id": e.response_id,
                    "output_index": 0,
                    "item": item,
                },
                *self._item_added(item, e.previous_item_id),
                {
                    "type": "response.content_part.added",
                    "response_id": e.response_id,
                    "item_id": e.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                },
            ]
        if isinstance(e, ev.ReplyTextDelta):
            self._text.setdefault(e.response_id, []).append(e.delta)
            return [
                {
                    "type": f"{self._transcript}.delta",
                    "response_id": e.response_id,
                    "item_id": e.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": e.delta,
                }
            ]
        if isinstance(e, ev.ReplyAudio):
            return [
                {
                    "type": f"{self._audio}.delta",
                    "response_id": e.response_id,
                    "item_id": e.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": b64(self.session.output_format.encode(e.pcm)),
                }
            ]
        if isinstance(e, ev.ResponseDone):
            return self._done(e)
        if isinstance(e, ev.ItemTruncated):
            return [
                {
                    "type": "conversation.item.truncated",
                    "item_id": e.item_id,
                    "content_index": e.content_index,
                    "audio_end_ms": e.audio_end_ms,
                }
            ]
        if isinstance(e, ev.ItemDeleted):
            return [{"type": "conversation.item.deleted", "item_id": e.item_id}]
        if isinstance(e, ev.ErrorEvent):
            return [self.error(e.message, type=e.type, code=e.code, event_id_=e.event_id)]
        raise TypeError(f"no wire form for {e!r}")

    def _item_added(self, item: dict[str, Any], previous: str | None) -> list[dict[str, Any]]:
        if self.beta:
            return [{"type": "conversation.item.created", "previous_item_id": previous, "item": item}]
        return [
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
            {"type": "conversation.item.created", "previous_item_id": previous, "item": item},
        ]

    def _assistant_item(self, item_id: str, status: str, transcript: str | None) -> dict[str, Any]:
        content = [] if transcript is None else [{"type": "audio", "transcript": transcript}]
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _response(self, rid: str, status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "realtime.response",
            "status": status,
            "status_details": None,
            "output": output,
            "usage": None,
            "conversation_id": None,
            **extra,
        }

    def _done(self, e: ev.ResponseDone) -> list[dict[str, Any]]:
        sent = "".join(self._text.pop(e.response_id, [])).strip()
        transcript = e.text if e.status != "cancelled" else (e.text or sent)
        item_status = "completed" if e.status == "completed" else "incomplete"
        item = self._assistant_item(e.item_id, item_status, transcript)
        base = {"response_id": e.response_id, "item_id": e.item_id, "output_index": 0, "content_index": 0}
        out: list[dict[str, Any]] = [
            {"type": f"{self._audio}.done", **base},
            {"type": f"{self._transcript}.done", **base, "transcript": transcript},
            {
                "type": "response.content_part.done",
                **base,
                "part": {"type": "audio", "transcript": transcript},
            },
            {
                "type": "response.output_item.done",
                "response_id": e.response_id,
                "output_index": 0,
                "item": item,
            },
        ]
        if not self.beta:
            out.append({"type": "conversation.item.done", "item": item})
        response = self._response(e.response_id, e.status, [item], silvertalk_timings=e.timings)
        response["status_details"] = e.status_details
        u = e.usage
        response["usage"] = {
            "total_tokens": u.total_tokens,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "input_token_details": {"text_tokens": u.input_tokens, "audio_tokens": 0},
            "output_token_details": {"text_tokens": u.output_tokens, "audio_tokens": 0},
        }
        out.append({"type": "response.done", "response": response})
        return out
