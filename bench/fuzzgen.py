"""A seeded generator of realtime client messages: valid, malformed and hostile, text and binary.

`Fuzzer(seed).message(n)` returns the n-th `Message` of a reproducible stream. Each message says
whether the server must refuse it (`bad`: an `error` event must answer it, echoing `event_id` when
the server can read one). A hostile message is a valid event with one field set to a value known to
be invalid for that field (a wrong type, out of range, NaN, 10**400, a path for a language, ...), so
every `bad` message is bad by construction and every other one is valid.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

MISSING = object()  # a hostile "value": the field is left out

# Invalid values by kind of field (a nullable field never gets null here).
_NOT_OBJECT = ["x", 1, [], True, 1.5]
_INT_COMMON = [1.5, "300", True, float("nan"), float("inf"), 1e300, 10**400, [], {}]
_INVALID: dict[str, list[Any]] = {
    "object": [*_NOT_OBJECT, None],
    "object?": _NOT_OBJECT,
    "threshold": [-0.1, 1.5, float("nan"), float("inf"), "0.5", True, 1e300, [], {}],
    "prefix_ms": [-1, 2001, 10**9, *_INT_COMMON],
    "silence_ms": [-1, 10_001, *_INT_COMMON],
    "bool": ["yes", 1, 0, "true", [], {}],
    "vad_type": ["client_vad", 1, "", None],
    "language": ["xx", "x" * 10_000, "../../etc/passwd", 1, [], "ko\x00", "/dev/null"],
    "name": [1, "m" * 65, [], {}],
    "speed": [float("nan"), float("inf"), float("-inf"), 0, 0.1, 2.5, 1e300, "1.0", True, []],
    "text16k": [1, [], "x" * 16_001, "a\x00b"],
    "session_type": ["transcription", 1, ""],
    "modalities": ["audio", ["video"], [1], ["audio", "text", "audio"]],
    "beta_format": ["pcm24", "", 1, {"type": "audio/pcm"}],
    "ga_format": [
        "audio/pcm",
        5,
        {},
        {"type": "audio/mp3"},
        {"type": "audio/pcm", "rate": 44100},
        {"type": "audio/pcm", "rate": "24000"},
        {"type": "audio/pcm", "rate": 24000.5},
    ],
    "item_type": ["function", "mcp_call", 1, None],
    "role": ["robot", 1, None],
    "id": [1, "x" * 65, "a b", "../x", "", []],
    "id!": [MISSING, None, 1, "x" * 65, "a b"],
    "content": [
        [],
        "hi",
        None,
        [1],
        [{"type": "input_audio", "audio": "AAAA"}],
        [{"type": "input_text"}],
        [{"type": "input_text", "text": 1}],
        [{"type": "input_text", "text": "x" * 20_001}],
        [{"type": "input_text", "text": "hi"}] * 33,
    ],
    "content_index": ["0", 1, -1, 0.5, None, [], 10**400],
    "audio_end_ms": [MISSING, -1, 1.5, "200", 1e300, 10**400, float("nan"), True],
    "audio": [MISSING, "!!!", 1, None, "AAA", []],
    "event_id": [1, "e" * 65, [], "a b"],
    "tools": [
        "get_weather",
        {},
        [1],
        [{"name": "get weather"}],
        [{"name": ""}],
        [{"name": "x" * 65}],
        [{"name": "list_events"}],  # the companion's own
        [{"description": "no name"}],
        [{"type": "mcp", "server_label": "x", "name": "f"}],
        [{"name": "f"}, {"name": "f"}],
        [{"name": f"t{i}"} for i in range(129)],
        [{"name": "f", "description": 5}],
        [{"name": "f", "parameters": "{}"}],
        [{"name": "f", "parameters": {"type": "string"}}],
        [{"name": "f", "parameters": {"type": "object", "required": "city"}}],
        [{"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}],
        [{"name": "f", "parameters": {"type": "object", "x": "y" * 16_001}}],
    ],
    "tool_choice": [
        "sometimes",
        "AUTO",
        1,
        [],
        {"type": "function"},
        {"type": "function", "name": "a b"},
        {"type": "mcp", "server_label": "x"},
    ],
    "fn_name": [MISSING, 1, None, "", "get weather", "x" * 65, "show_photo"],
    "arguments": [1, {}, "city=Seoul", "[1, 2]", '{"a": NaN}', "x" * 20_001],
    "call_id": [1, "x" * 65, "a b", "", []],
    "call_id!": [MISSING, None, 1, "x" * 65, "a b"],
    "output": [MISSING, None, 1, {"sky": "clear"}, "a\x00b", "x" * 64_001],
}
_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_weather", "description": "Today's weather in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"type": "function", "name": "call_family", "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "hang_up"},
]  # fmt: skip
#: Call ids the function items pick from: some name a call made earlier, some answer one twice.
_CALL_IDS = 12
_ITEM = "conversation.item.create"
# Where each kind sits in each event (paths from the event's root).
_FIELDS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "session.update": [
        (("session",), "object"),
        (("session", "type"), "session_type"),
        (("session", "instructions"), "text16k"),
        (("session", "audio"), "object?"),
        (("session", "audio", "input"), "object?"),
        (("session", "audio", "output"), "object?"),
        (("session", "audio", "input", "format"), "ga_format"),
        (("session", "audio", "output", "format"), "ga_format"),
        (("session", "audio", "input", "turn_detection"), "object?"),
        (("session", "audio", "input", "turn_detection", "type"), "vad_type"),
        (("session", "audio", "input", "turn_detection", "threshold"), "threshold"),
        (("session", "audio", "input", "turn_detection", "prefix_padding_ms"), "prefix_ms"),
        (("session", "audio", "input", "turn_detection", "silence_duration_ms"), "silence_ms"),
        (("session", "audio", "input", "turn_detection", "create_response"), "bool"),
        (("session", "audio", "input", "turn_detection", "interrupt_response"), "bool"),
        (("session", "audio", "input", "transcription"), "object?"),
        (("session", "audio", "input", "transcription", "language"), "language"),
        (("session", "audio", "input", "transcription", "model"), "name"),
        (("session", "audio", "output", "speed"), "speed"),
        (("session", "audio", "output", "voice"), "name"),
        (("session", "voice"), "name"),
        (("session", "speed"), "speed"),
        (("session", "modalities"), "modalities"),
        (("session", "input_audio_format"), "beta_format"),
        (("session", "output_audio_format"), "beta_format"),
        (("session", "turn_detection"), "object?"),
        (("session", "turn_detection", "prefix_padding_ms"), "prefix_ms"),
        (("session", "turn_detection", "silence_duration_ms"), "silence_ms"),
        (("session", "turn_detection", "threshold"), "threshold"),
        (("session", "input_audio_transcription"), "object?"),
        (("session", "input_audio_transcription", "language"), "language"),
        (("session", "tools"), "tools"),
        (("session", "tool_choice"), "tool_choice"),
    ],
    "conversation.item.create": [
        (("item",), "object"),
        (("item", "type"), "item_type"),
        (("item", "role"), "role"),
        (("item", "id"), "id"),
        (("item", "content"), "content"),
        (("previous_item_id",), "id"),
    ],
    f"{_ITEM}:function_call": [
        (("item", "name"), "fn_name"),
        (("item", "arguments"), "arguments"),
        (("item", "call_id"), "call_id"),
        (("item", "id"), "id"),
    ],
    f"{_ITEM}:function_call_output": [
        (("item", "call_id"), "call_id!"),
        (("item", "output"), "output"),
        (("item", "id"), "id"),
    ],
    "conversation.item.truncate": [
        (("item_id",), "id!"),
        (("content_index",), "content_index"),
        (("audio_end_ms",), "audio_end_ms"),
    ],
    "conversation.item.delete": [(("item_id",), "id!")],
    "input_audio_buffer.append": [(("audio",), "audio")],
    "response.create": [
        (("response",), "object?"),
        (("response", "tools"), "tools"),
        (("response", "tool_choice"), "tool_choice"),
    ],
    "response.cancel": [(("response_id",), "id")],
    "input_audio_buffer.commit": [],
    "input_audio_buffer.clear": [],
}
_NOT_JSON = ["{not json", "", "null", "[]", "42", '"text"', "{", '{"type": }', "[" * 5000, '"\\ud800"']
_NOT_EVENTS = [{}, {"type": 1}, {"type": None}, {"event": "session.update"}]
_UNKNOWN = [
    "bogus.event",
    "",
    "response.create ",
    "conversation.item.retrieve",
    "x" * 10_000,
    "SESSION.UPDATE",
]
_TEXTS = ["How are you?", "안녕하세요. 오늘 날씨가 좋네요.", "I had lunch with my daughter.", "네", "🙂 " * 9]
_LANGUAGES = ["en", "ko", "ja", "de", "", None]


@dataclass(frozen=True, slots=True)
class Message:
    """One message for the socket; `bad` ones must each get an `error` event."""

    data: str | bytes
    bad: bool
    #: The event_id an error must echo (None: the server cannot read one, e.g. not JSON).
    event_id: str | None
    #: What it is, for the report ("valid session.update", "hostile conversation.item.truncate", ...).
    kind: str


class Fuzzer:
    """Reproducible messages: the same seed gives the same stream."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def message(self, n: int) -> Message:
        rng = random.Random(self.seed * 1_000_003 + n)
        eid = f"fz{n}"
        roll = rng.random()
        if roll < 0.40:
            kind = rng.choice(list(_FIELDS))
            return Message(_dumps(self.valid(rng, kind, eid)), False, eid, f"valid {kind}")
        if roll < 0.50:
            size = rng.choice([0, 1, 3, 160, 961, 4800, rng.randrange(16_000)])
            return Message(rng.randbytes(size), False, None, "binary")
        if roll < 0.56:
            return Message(rng.choice(_NOT_JSON), True, None, "not json")
        if roll < 0.60:
            return Message(_dumps(rng.choice(_NOT_EVENTS)), True, None, "not an event")
        if roll < 0.65:
            event = {"type": rng.choice(_UNKNOWN), "event_id": eid}
            return Message(_dumps(event), True, eid, "unknown type")
        kind = rng.choice([k for k, fields in _FIELDS.items() if fields] + ["event_id"])
        if kind == "event_id":
            event = self.valid(rng, rng.choice(list(_FIELDS)), eid)
            event["event_id"] = rng.choice(_INVALID["event_id"])
            return Message(_dumps(event), True, None, "hostile event_id")
        path, field_kind = rng.choice(_FIELDS[kind])
        event = self.valid(rng, kind, eid)
        _set(event, path, rng.choice(_INVALID[field_kind]))
        return Message(_dumps(event), True, eid, f"hostile {kind}")

    def valid(self, rng: random.Random, kind: str, eid: str) -> dict[str, Any]:
        """A valid event of `kind` with every optional field it may carry (some left out).

        `kind` is an event type, or `conversation.item.create:<item type>` for the function items.
        A valid message may still be refused for the conversation's state (no such call, an output
        given twice): tools and a tool_choice naming one of them always come together.
        """
        kind, _, item_type = kind.partition(":")
        event: dict[str, Any] = {"type": kind, "event_id": eid}
        if item_type == "function_call":
            args = json.dumps({"city": rng.choice(["Seoul", "부산", "Jeju"])}, ensure_ascii=False)
            name = rng.choice([*(t["name"] for t in _TOOLS), "lookup-2"])
            event["item"] = {"type": item_type, "name": name, "arguments": args, "id": f"item_{eid}"}
            if rng.random() < 0.8:
                event["item"]["call_id"] = f"call_{rng.randrange(_CALL_IDS)}"
        elif item_type == "function_call_output":
            output = rng.choice([*_TEXTS, '{"sky": "clear", "celsius": 21}', ""])
            event["item"] = {
                "type": item_type,
                "call_id": f"call_{rng.randrange(_CALL_IDS)}",
                "output": output,
            }
        elif kind == "session.update":
            event["session"] = self.session(rng)
        elif kind == "conversation.item.create":
            role = rng.choice(["user", "user", "assistant", "system"])
            part = "output_text" if role == "assistant" else "input_text"
            content = [{"type": part, "text": rng.choice(_TEXTS)} for _ in range(rng.randint(1, 3))]
            event["item"] = {"type": "message", "role": role, "content": content, "id": f"item_{eid}"}
            event["previous_item_id"] = None
        elif kind in ("conversation.item.truncate", "conversation.item.delete"):
            event["item_id"] = f"item_missing_{rng.randrange(10**6)}"  # the server has no such item
            if kind.endswith("truncate"):
                event |= {"content_index": 0, "audio_end_ms": rng.randrange(10_000)}
        elif kind == "input_audio_buffer.append":
            event["audio"] = base64.b64encode(_audio(rng)).decode()
        elif kind == "response.create":
            event["response"] = rng.choice(
                [{}, self.tools(rng), {"tool_choice": rng.choice(["auto", "none"])}]
            )
        elif kind == "response.cancel":
            event["response_id"] = f"resp_{rng.randrange(100)}"
        return event

    def session(self, rng: random.Random) -> dict[str, Any]:
        """A valid session in the GA or the beta shape, with random in-range values."""
        td: dict[str, Any] | None = {
            "type": rng.choice(["server_vad", "semantic_vad"]),
            "threshold": rng.choice([0, 0.3, 0.5, 1, None]),
            "prefix_padding_ms": rng.choice([0, 300, 2000, None]),
            "silence_duration_ms": rng.choice([0, 200, 500, 10_000, None]),
            "create_response": rng.choice([True, False, None]),
            "interrupt_response": rng.choice([True, False]),
        }
        if rng.random() < 0.3:
            td = None
        transcription = {"model": "whisper-1", "language": rng.choice(_LANGUAGES)}
        if rng.random() < 0.5:  # GA
            fmt = rng.choice(
                [{"type": "audio/pcm", "rate": r} for r in (8000, 16000, 24000, 48000)]
                + [{"type": "audio/pcmu"}, {"type": "audio/pcma"}, {"type": "audio/pcm"}]
            )
            return {
                "type": "realtime",
                "instructions": rng.choice(["", "Speak slowly.", "x" * 16_000]),
                "audio": {
                    "input": {"format": fmt, "transcription": transcription, "turn_detection": td},
                    "output": {
                        "format": rng.choice([fmt, {"type": "audio/pcm", "rate": 24000}]),
                        "voice": rng.choice(["alloy", "marin"]),
                        "speed": rng.choice([0.25, 0.8, 1, 1.5, 2.0]),
                    },
                },
                **self.tools(rng),
                "temperature": 0.8,
            }
        return {
            "modalities": rng.choice([["audio", "text"], ["text"]]),
            "voice": "alloy",
            "input_audio_format": rng.choice(["pcm16", "g711_ulaw", "g711_alaw"]),
            "output_audio_format": rng.choice(["pcm16", "g711_ulaw"]),
            "input_audio_transcription": transcription,
            "turn_detection": td,
            "speed": rng.choice([0.5, 1.0, None]),
            **(self.tools(rng) if rng.random() < 0.5 else {}),
        }

    def tools(self, rng: random.Random) -> dict[str, Any]:
        """Some of the client's tools, and a tool_choice that fits them."""
        tools = rng.sample(_TOOLS, rng.randint(0, len(_TOOLS)))
        named = [{"type": "function", "name": t["name"]} for t in tools]
        return {"tools": tools, "tool_choice": rng.choice(["auto", "none", "required", *named])}


def _audio(rng: random.Random) -> bytes:
    """20-200 ms of silence, noise or a loud buzz, as pcm16 24 kHz bytes (whatever the format)."""
    n = rng.choice([20, 100, 200]) * 24
    kind = rng.random()
    if kind < 0.4:
        return bytes(2 * n)
    if kind < 0.8:
        return rng.randbytes(2 * n)
    level = 9000
    return b"".join(((level if (i // 80) % 2 else -level) & 0xFFFF).to_bytes(2, "little") for i in range(n))


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set (or, for MISSING, remove) a field, making the objects on the way when absent or null."""
    node = event
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _dumps(event: Any) -> str:
    # allow_nan: NaN and Infinity go out as the bare tokens a careless client sends.
    return json.dumps(event, ensure_ascii=False, allow_nan=True)
