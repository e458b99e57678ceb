"""The OpenAI Realtime wire protocol, server side: the core's events out as JSON server events.

`Encoder` turns `pipeline.events` into server events; it uses the GA event names
(`response.output_audio.delta`, ...) and, for clients that connected with `OpenAI-Beta: realtime=v1`
(the beta SDK), the beta names instead (`response.audio.delta`, ...). Every server event carries an
`event_id`; `response.done` carries our per-turn timings in `response.silvertalk_timings`.

A response's message item is announced with its first words: a reply that only calls the client's
tools has none, as with OpenAI. Its function_call items come with its end, each whole (added, its
arguments in one delta, done) after the message is done and before `response.done`, which lists
them in `output`.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from pipeline import events as ev
from server.realtime.session import Session


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
        #: Per response: its message item's events, until its first words (or its end) send them.
        self._unannounced: dict[str, list[dict[str, Any]]] = {}

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
        if isinstance(e, ev.CallItemCreated):
            return self._item_added(_call_item(e), e.previous_item_id)
        if isinstance(e, ev.ResponseStarted):
            self._text[e.response_id] = []
            item = self._assistant_item(e.item_id, "in_progress", None)
            part = {"type": "audio", "transcript": ""}
            self._unannounced[e.response_id] = [
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
            return [
                {"type": "response.created", "response": self._response(e.response_id, "in_progress", [])}
            ]
        if isinstance(e, ev.ReplyTextDelta):
            self._text.setdefault(e.response_id, []).append(e.delta)
            return [
                *self._unannounced.pop(e.response_id, []),
                {
                    "type": f"{self._transcript}.delta",
                    "response_id": e.response_id,
                    "item_id": e.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": e.delta,
                },
            ]
        if isinstance(e, ev.ReplyAudio):
            return [
                *self._unannounced.pop(e.response_id, []),
                {
                    "type": f"{self._audio}.delta",
                    "response_id": e.response_id,
                    "item_id": e.item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": b64(self.session.output_format.encode(e.pcm)),
                },
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
            return [self.error(e.message, type=e.type, code=e.code, event_id_=e.event_id, param=e.param)]
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

    def _function_call(self, rid: str, index: int, call: ev.FunctionCall) -> list[dict[str, Any]]:
        """One function_call item of a response, whole: added, its arguments, done."""
        base = {"response_id": rid, "output_index": index}
        ids = {**base, "item_id": call.item_id, "call_id": call.call_id}
        done = _call_item(call)
        started = {**done, "status": "in_progress", "arguments": ""}
        out: list[dict[str, Any]] = [
            {"type": "response.output_item.added", **base, "item": started},
            *self._item_added(started, call.previous_item_id),
            {"type": "response.function_call_arguments.delta", **ids, "delta": call.arguments},
            {
                "type": "response.function_call_arguments.done",
                **ids,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "response.output_item.done", **base, "item": done},
        ]
        if not self.beta:
            out.append({"type": "conversation.item.done", "item": done})
        return out

    def _done(self, e: ev.ResponseDone) -> list[dict[str, Any]]:
        """The message item's end (unless it only called tools, silently), its calls, response.done."""
        unannounced = self._unannounced.pop(e.response_id, [])
        sent = "".join(self._text.pop(e.response_id, [])).strip()
        out: list[dict[str, Any]] = []
        output: list[dict[str, Any]] = []
        if e.message:
            transcript = e.text if e.status != "cancelled" else (e.text or sent)
            item_status = "completed" if e.status == "completed" else "incomplete"
            item = self._assistant_item(e.item_id, item_status, transcript)
            base = {"response_id": e.response_id, "item_id": e.item_id, "output_index": 0, "content_index": 0}
            out += [
                *unannounced,
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
            output.append(item)
        for index, call in enumerate(e.calls, start=len(output)):
            out += self._function_call(e.response_id, index, call)
            output.append(_call_item(call))
        response = self._response(e.response_id, e.status, output, silvertalk_timings=e.timings)
        out.append({"type": "response.done", "response": self._finished(response, e)})
        return out

    def _finished(self, response: dict[str, Any], e: ev.ResponseDone) -> dict[str, Any]:
        """response.done's response: why it ended and the LLM's token counts."""
        response["status_details"] = e.status_details
        u = e.usage
        response["usage"] = {
            "total_tokens": u.total_tokens,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "input_token_details": {"text_tokens": u.input_tokens, "audio_tokens": 0},
            "output_token_details": {"text_tokens": u.output_tokens, "audio_tokens": 0},
        }
        return response


def _call_item(e: ev.FunctionCall | ev.CallItemCreated) -> dict[str, Any]:
    """A function_call item (or, from the client, a function_call_output item), completed."""
    item: dict[str, Any] = {
        "id": e.item_id,
        "object": "realtime.item",
        "status": "completed",
        "call_id": e.call_id,
    }
    if isinstance(e, ev.CallItemCreated) and e.kind == "function_call_output":
        return {**item, "type": "function_call_output", "output": e.output}
    return {**item, "type": "function_call", "name": e.name, "arguments": e.arguments}
