"""The OpenAI Realtime wire protocol, client side: each client event parsed into a typed object.

`parse(text)` checks a text frame whole (JSON, then every field of the event: types, ranges,
lengths, languages) and returns one of the `ClientEvent` classes in `EVENTS`, or raises
`ProtocolError`, which the gateway answers with an `error` event (the call goes on). Beta and GA
clients send the same client event names; they differ in the session shape
(`server.realtime.session`) and in the server event names (`server.realtime.encoder`).
`conversation.item.create` parses into one class per item type: `CreateItem` (a message),
`CreateFunctionCall`, `CreateFunctionOutput`.

JSON is read by pydantic's parser: it refuses lone surrogates ("\\ud800") and deep nesting that
Python's `json` lets through; a raw NaN or Infinity parses, and the field it lands in refuses it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Literal

import pydantic_core
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from server import ServerError
from server.realtime.session import MAX_NAME, FunctionName, SessionUpdate, ToolsUpdate, Wire, refuse_nul

MAX_TEXT = 20_000  # characters of text in one conversation item
MAX_ARGUMENTS = 20_000  # characters of a function call's arguments (JSON)
MAX_OUTPUT = 64_000  # characters of a client tool's output
MAX_AUDIO_END_MS = 24 * 3600 * 1000


class ProtocolError(ServerError, ValueError):
    """A malformed or unsupported client event; answered with an `error` event, the call goes on.

    `code` and `param` (the offending field, e.g. `session.audio.output.speed`) go into the error
    event; `event_id` is the client's own id for the event, when it could be read.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_value",
        param: str | None = None,
        event_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.param, self.event_id = code, param, event_id


def _base64(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the bytes check then says what is wrong
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None


#: A client-chosen id (items, events, responses): what the database and the logs can carry.
Id = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9_.:\-]+$")]


def _json_object(value: str) -> str:
    try:
        parsed = pydantic_core.from_json(value, allow_inf_nan=False)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError("""must be a JSON object in a string, e.g. '{"city": "Seoul"}'""")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(refuse_nul)]
Audio = Annotated[bytes, BeforeValidator(_base64)]


class ClientEvent(Wire):
    """A client event: its `type` (one of `EVENTS`) and the client's optional `event_id`."""

    TYPE: ClassVar[str] = ""
    type: str
    event_id: Id | None = None


class AudioAppend(ClientEvent):
    TYPE = "input_audio_buffer.append"
    #: Audio in the session's input format, base64 on the wire.
    audio: Audio


class AudioCommit(ClientEvent):
    TYPE = "input_audio_buffer.commit"


class AudioClear(ClientEvent):
    TYPE = "input_audio_buffer.clear"


class UpdateSession(ClientEvent):
    TYPE = "session.update"
    session: SessionUpdate


class ContentPart(Wire):
    """Text content only: `input_text` (user, system), `text` (beta assistant), `output_text` (GA)."""

    type: Literal["input_text", "text", "output_text"]
    text: Text


class MessageItem(Wire):
    id: Id | None = None
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system"] = "user"
    content: list[ContentPart] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _bounded(self) -> MessageItem:
        if sum(len(part.text) for part in self.content) > MAX_TEXT:
            raise ValueError(f"an item holds at most {MAX_TEXT} characters of text")
        return self

    @property
    def text(self) -> str:
        return " ".join(part.text for part in self.content)


class FunctionCallItem(Wire):
    """A call of one of the client's tools, as if the model had made it (history for the model)."""

    id: Id | None = None
    type: Literal["function_call"]
    #: Left out: one is made up (an output can then answer it by that id, from the echo).
    call_id: Id | None = None
    name: FunctionName
    arguments: Annotated[str, Field(max_length=MAX_ARGUMENTS), AfterValidator(_json_object)] = "{}"


class FunctionOutputItem(Wire):
    """The client's answer to a function_call item of the conversation (checked there)."""

    id: Id | None = None
    type: Literal["function_call_output"]
    call_id: Id
    output: Annotated[str, Field(max_length=MAX_OUTPUT), AfterValidator(refuse_nul)]


class CreateItem(ClientEvent):
    TYPE = "conversation.item.create"
    previous_item_id: Id | None = None
    item: MessageItem


class CreateFunctionCall(ClientEvent):
    TYPE = "conversation.item.create"
    previous_item_id: Id | None = None
    item: FunctionCallItem


class CreateFunctionOutput(ClientEvent):
    TYPE = "conversation.item.create"
    previous_item_id: Id | None = None
    item: FunctionOutputItem


#: conversation.item.create by its item's type (a missing type is a message, as with OpenAI).
ITEMS: dict[str, type[ClientEvent]] = {
    "message": CreateItem,
    "function_call": CreateFunctionCall,
    "function_call_output": CreateFunctionOutput,
}


class TruncateItem(ClientEvent):
    TYPE = "conversation.item.truncate"
    item_id: Id
    #: Our items have one content part.
    content_index: Literal[0] = 0
    audio_end_ms: int = Field(ge=0, le=MAX_AUDIO_END_MS)


class DeleteItem(ClientEvent):
    TYPE = "conversation.item.delete"
    item_id: Id


class ResponseParams(ToolsUpdate):
    """`response.create`'s optional `response`: `tools` and `tool_choice` for this response
    instead of the session's (instructions, modalities, ... are not used yet)."""


class CreateResponse(ClientEvent):
    TYPE = "response.create"
    response: ResponseParams | None = None


class CancelResponse(ClientEvent):
    TYPE = "response.cancel"
    response_id: Id | None = None


EVENTS: dict[str, type[ClientEvent]] = {
    cls.TYPE: cls
    for cls in (
        AudioAppend,
        AudioCommit,
        AudioClear,
        UpdateSession,
        CreateItem,
        TruncateItem,
        DeleteItem,
        CreateResponse,
        CancelResponse,
    )
}


def parse(text: str | bytes) -> ClientEvent:
    """One text frame -> its typed client event. Raises ProtocolError naming what is wrong."""
    try:
        data = pydantic_core.from_json(text, allow_inf_nan=True)
    except ValueError as e:
        raise ProtocolError(f"Invalid client event: not JSON ({e}).", code="invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError(
            "Invalid client event: each must be a JSON object with a string 'type'.", code="invalid_event"
        )
    kind, eid = data["type"], _valid_id(data.get("event_id"))
    cls = EVENTS.get(kind)
    if cls is None:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."
        raise ProtocolError(
            f"Unknown client event type '{shown}'.", code="unknown_event_type", param="type", event_id=eid
        )
    if cls is CreateItem:
        cls = _item_event(data.get("item"), eid)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        param = _param(first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] in ("model_type", "dict_type"):  # not "... or instance of AudioInputUpdate"
            msg = "Input should be a JSON object"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ProtocolError(f"Invalid '{param}' in {kind}: {msg}.{more}", param=param, event_id=eid) from None


def _item_event(item: Any, eid: str | None) -> type[ClientEvent]:
    """The conversation.item.create class for the item's type; an unknown type is named."""
    kind = item.get("type", "message") if isinstance(item, dict) else "message"
    if isinstance(kind, str) and kind not in ITEMS:
        shown = kind if len(kind) <= 64 else kind[:64] + "..."
        raise ProtocolError(
            f"Invalid 'item.type' in conversation.item.create: '{shown}' is not one of "
            f"{', '.join(repr(k) for k in ITEMS)}.",
            param="item.type",
            event_id=eid,
        )
    return ITEMS.get(kind, CreateItem) if isinstance(kind, str) else CreateItem


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "event"


def _valid_id(eid: Any) -> str | None:
    """The client's event_id, if it is one we can echo (the check in `Id`)."""
    if not isinstance(eid, str):
        return None
    try:
        return ClientEvent.model_validate({"type": "", "event_id": eid}).event_id
    except ValidationError:
        return None
