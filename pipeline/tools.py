"""The companion's tools as the conversation core sees them: specs, a runner interface, no storage.

The core sends `TOOL_SPECS` to the LLM (each engine turns the JSON schemas into its own wire
shape), and when the model calls one it awaits `runner.run(name, arguments)` and feeds the result
dict back as a `ToolResult`. The gateway builds the runner over the caller's own rows
(`server.companion.tools.CompanionTools`); the core never touches a database or the web.

A result is always a dict the model can read: `{"ok": true, ...}`, or `{"ok": false, "error":
"<plain words>"}` for a call it can correct (bad arguments, nothing found), never an exception.
Tools in `CHANGES` save or start something. They take `confirmed`: without `confirmed: true` they
change nothing and answer `{"ok": false, "needs_confirmation": true, "ask": "<question>"}`, the
question to speak ("Shall I put the dentist on Friday at ten?"); the model calls again with
`confirmed: true` only once the caller said yes (or had already said yes to exactly that).

*Client tools* (`ClientTools`) are the realtime client's own functions (the session's `tools`):
the model is offered them beside the companion's, but the core never runs one. A call of one ends
the reply and goes out as a function_call item; the client's output comes back as an item
(`client_result`), and the next reply sees both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from pipeline.engines.base import ToolCall, ToolChoice, ToolResult, ToolSpec

__all__ = [
    "CHANGES",
    "NO_OUTPUT",
    "PHOTO_SHOW_EVENT",
    "SIDE_EFFECTS",
    "TOOL_NAMES",
    "TOOL_SPECS",
    "ClientTools",
    "ToolCall",
    "ToolResult",
    "ToolRunner",
    "client_result",
    "error_result",
    "run_call",
]

#: The custom realtime server event that shows a photo on the caller's screen.
PHOTO_SHOW_EVENT = "silvertalk.photo.show"

_CONFIRMED = {
    "type": "boolean",
    "description": "true only after the caller said yes to exactly this; otherwise leave it out "
    "and you get back the question to ask first",
}
_STR = {"type": "string"}

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "list_events",
        "The caller's calendar for a day or a range of days (recurring events included), in their "
        "time zone. Use it for 'what is on today', 'do I have anything on Friday'.",
        {
            "type": "object",
            "properties": {
                "date": {"type": "string", "description": "a day, YYYY-MM-DD; today when left out"},
                "end_date": {
                    "type": "string",
                    "description": "last day of a range, YYYY-MM-DD (at most 31 days after date)",
                },
            },
        },
    ),
    ToolSpec(
        "add_event",
        "Put an event or a reminder on the caller's calendar. Ask first.",
        {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "short, e.g. 'Dentist' or '혈압약 드시기'"},
                "start": {
                    "type": "string",
                    "description": "local date and time, YYYY-MM-DDTHH:MM, in the caller's time zone",
                },
                "end": {"type": "string", "description": "local end time, YYYY-MM-DDTHH:MM"},
                "repeat": {
                    "type": "string",
                    "description": "an RFC 5545 RRULE such as FREQ=DAILY or FREQ=WEEKLY;BYDAY=MO",
                },
                "remind_minutes_before": {"type": "integer", "description": "0 to 10080"},
                "confirmed": _CONFIRMED,
            },
            "required": ["title", "start"],
        },
    ),
    ToolSpec(
        "find_memories",
        "Search the caller's saved memories by words, people, place or era; best matches first.",
        {
            "type": "object",
            "properties": {
                "words": {"type": "string", "description": "free words, e.g. 'wedding' or '첫 월급'"},
                "people": {"type": "array", "items": _STR, "description": "names of people"},
                "place": {"type": "string"},
                "era": {"type": "string", "description": "a year or a decade: '1968' or '1960s'"},
            },
        },
    ),
    ToolSpec(
        "save_memory",
        "Save a story the caller told as one of their memories. Ask first.",
        {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "body": {"type": "string", "description": "the story in a few sentences"},
                "people": {"type": "array", "items": _STR},
                "place": {"type": "string"},
                "happened_on": {"type": "string", "description": "YYYY, YYYY-MM or YYYY-MM-DD"},
                "confirmed": _CONFIRMED,
            },
            "required": ["title"],
        },
    ),
    ToolSpec(
        "show_photo",
        "Show one of the caller's photos large on their screen: a photo by id, or the first photo "
        "of a memory (by id, or found by words).",
        {
            "type": "object",
            "properties": {
                "photo_id": _STR,
                "memory_id": _STR,
                "words": {"type": "string", "description": "words to find the memory by"},
            },
        },
    ),
    ToolSpec(
        "make_picture",
        "Start making a picture from one of the caller's memories (it takes a minute; it appears "
        "in their gallery). Ask first.",
        {
            "type": "object",
            "properties": {
                "memory_id": _STR,
                "words": {"type": "string", "description": "words to find the memory by"},
                "confirmed": _CONFIRMED,
            },
        },
    ),
)

TOOL_NAMES = frozenset(spec.name for spec in TOOL_SPECS)
#: Tools that save or start something: a spoken confirmation comes first.
CHANGES = frozenset({"add_event", "save_memory", "make_picture"})
#: Tools with effects outside the reply (a row written, an event on the caller's screen): a
#: speculative reply (the caller may not be done) runs them only once it is released.
SIDE_EFFECTS = CHANGES | {"show_photo"}


def error_result(message: str, **extra: Any) -> dict[str, Any]:
    """A result telling the model, in plain words, why the call did nothing (so it can recover)."""
    return {"ok": False, "error": message, **extra}


@runtime_checkable
class ToolRunner(Protocol):
    """Runs the companion's tools for one call's caller."""

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run tool `name`; return its result dict. Never raises for a bad or unknown call:
        it answers with `error_result(...)` instead, so the model can correct itself."""
        ...


async def run_call(runner: ToolRunner, call: ToolCall) -> ToolResult:
    """Run one model call and wrap its result for the history (`Message("tool", tool_result=...)`)."""
    return ToolResult(call.id, call.name, await runner.run(call.name, call.arguments))


@dataclass(frozen=True, slots=True)
class ClientTools:
    """The tools the client defines and runs itself, and how the model may use them in a reply."""

    specs: tuple[ToolSpec, ...] = ()
    #: "auto": the model decides; "none": they are not offered; "required": the model's first turn
    #: must call a tool; "function": it must call the one named `function`.
    choice: Literal["auto", "none", "required", "function"] = "auto"
    function: str | None = None

    @property
    def offered(self) -> tuple[ToolSpec, ...]:
        return () if self.choice == "none" else self.specs

    def first_turn(self) -> ToolChoice:
        """What the model's first turn of a reply must do; later turns (after the companion's own
        tools ran) are free, or a model forced every turn would never answer."""
        if self.choice == "function":
            return ToolChoice(required=True, name=self.function)
        return ToolChoice(required=self.choice == "required")


#: What the model is told about a client tool call the client has not answered (yet) when the
#: next reply starts: both APIs refuse a call without a result, and the model should not guess one.
NO_OUTPUT = error_result("the app has not sent this call's result (yet)")


def client_result(call: ToolCall, output: str) -> ToolResult:
    """The client's output for `call`: sent as text where the engine takes text, else as the JSON
    object it holds, or as {"output": text} (Gemini's convention for a plain answer)."""
    try:
        parsed = json.loads(output)
    except ValueError:
        parsed = None
    result = parsed if isinstance(parsed, dict) else {"output": output}
    return ToolResult(call.id, call.name, result, output)
