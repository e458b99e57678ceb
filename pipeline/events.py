"""What the conversation core emits: frozen, slotted dataclasses, one per thing that happens in a call.

The gateway (`server.realtime.encoder`) turns each of these into OpenAI Realtime server events;
the core never builds JSON. Times ending in `_ms` are milliseconds of *input audio* since the call
began (the clock the protocol's `audio_start_ms` / `audio_end_ms` use); `timings` are wall-clock
milliseconds measured on the monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from pipeline.engines.base import Usage

ResponseStatus = Literal["completed", "cancelled", "failed", "incomplete"]


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Server VAD heard the caller start a turn."""

    #: The user item this speech will become.
    item_id: str
    #: Where the turn starts in the input audio, prefix padding included.
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Server VAD decided the turn is over (the adaptive silence has elapsed)."""

    item_id: str
    #: Where the last voiced frame ended in the input audio.
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class InputCommitted:
    """The input audio buffer became a user item (by VAD or by the client's commit)."""

    item_id: str
    #: The item it follows in the conversation, None when it is the first.
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class InputCleared:
    """The client cleared the uncommitted input audio."""


@dataclass(frozen=True, slots=True)
class ItemCreated:
    """An item entered the conversation (a client text item, or a user audio item at commit)."""

    item_id: str
    previous_item_id: str | None
    role: Literal["user", "assistant", "system"]
    #: "input_text", "input_audio" or "text" (for assistant items created by the client).
    content_type: str
    #: The text, when the item is text; "" for audio until its transcript arrives.
    text: str = ""


@dataclass(frozen=True, slots=True)
class CallItemCreated:
    """The client added a function_call item (a call of its own tool) or the output of one."""

    item_id: str
    previous_item_id: str | None
    kind: Literal["function_call", "function_call_output"]
    call_id: str
    #: function_call: the tool's name and its arguments as a JSON object in a string.
    name: str = ""
    arguments: str = ""
    #: function_call_output: what the client's tool answered.
    output: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A partial transcript of the turn in progress: `delta` is new stable text to append."""

    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    """The final transcript of a committed user turn."""

    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptFailed:
    """The turn could not be transcribed; the call goes on."""

    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """The companion begins a reply: one assistant item with one audio content part."""

    response_id: str
    item_id: str
    #: The item the reply follows (the user turn it answers).
    previous_item_id: str | None


@dataclass(frozen=True, slots=True)
class ReplyTextDelta:
    """Text of the reply, sent sentence by sentence as each sentence's audio starts."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ReplyAudio:
    """A chunk of reply audio at the session's output rate, at most 100 ms long."""

    response_id: str
    item_id: str
    pcm: npt.NDArray[np.int16] = field(repr=False)


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A call of one of the client's tools that a reply ends with: a function_call item, whole
    (the server does not run it; the client's output comes back as an item)."""

    item_id: str
    #: The item it follows: the reply's message, or the call before it.
    previous_item_id: str | None
    call_id: str
    name: str
    #: A JSON object, in a string.
    arguments: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The reply ended: completed, cancelled by barge-in or the client, or failed upstream."""

    response_id: str
    item_id: str
    status: ResponseStatus
    #: The text the caller actually heard (all of it when completed, the heard part when cancelled).
    text: str
    #: Why it did not complete, e.g. {"type": "cancelled", "reason": "turn_detected"}.
    status_details: dict[str, object] | None = None
    #: Per-turn milliseconds: endpointing_wait, speech_end_to_transcript, ..._to_first_audio_sent.
    timings: dict[str, float] = field(default_factory=dict)
    #: The LLM's tokens as its API reported them (0 when it reports none, and for fixed texts).
    usage: Usage = field(default_factory=Usage)
    #: Milliseconds of audio sent to the caller.
    audio_ms: int = 0
    #: False when the reply said nothing and only called client tools: it has no message item.
    message: bool = True
    #: The client's tools it called, after its words (only a completed reply has any).
    calls: tuple[FunctionCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ItemTruncated:
    """An assistant item was cut to what the caller heard."""

    item_id: str
    content_index: int
    audio_end_ms: int
    #: The text kept in the history.
    text: str


@dataclass(frozen=True, slots=True)
class ItemDeleted:
    item_id: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A client mistake or an engine failure the caller's app should know about; the call goes on."""

    message: str
    #: "invalid_request_error" for client mistakes, "server_error" for ours.
    type: str = "invalid_request_error"
    code: str | None = None
    #: The client event that caused it, echoed back.
    event_id: str | None = None
    #: The offending field of that event (`item.call_id`), when one is to blame.
    param: str | None = None


OutputEvent = (
    SpeechStarted
    | SpeechStopped
    | InputCommitted
    | InputCleared
    | ItemCreated
    | CallItemCreated
    | TranscriptDelta
    | TranscriptFinal
    | TranscriptFailed
    | ResponseStarted
    | ReplyTextDelta
    | ReplyAudio
    | ResponseDone
    | ItemTruncated
    | ItemDeleted
    | ErrorEvent
)
