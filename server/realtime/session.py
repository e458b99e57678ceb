"""The realtime session: what a client may set with `session.update`, in the beta or the GA shape.

`SessionUpdate` is the wire shape of an update, both shapes in one model (beta: `input_audio_format`,
`turn_detection`, `input_audio_transcription`, ...; GA: `audio.input.format`,
`audio.input.turn_detection`, `audio.output.speed`, ...), with `tools` and `tool_choice` (the
client's own functions, the same in both). Every field is checked (type, range, length, language,
tool names and JSON schemas) when the client event is parsed (`server.realtime.protocol.parse`);
fields we do not use (`temperature`, ...) are ignored. `Session.updated(update)` then returns the
new session whole, so an update with one bad value changes nothing (`SessionConflict` when it is
valid alone but not with the session: a `tool_choice` naming a tool the session lacks).
`Session.to_json` is what session.created and session.updated echo, in the client's shape.

Turn-detection defaults come from `pipeline.turns.CallConfig`, the core's own defaults: one source.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
)

from pipeline.audio import PCM16_24K, AudioFormat
from pipeline.engines.base import ToolSpec
from pipeline.tools import TOOL_NAMES, ClientTools
from pipeline.turns import CallConfig

_CORE = CallConfig()

#: Transcription languages: Whisper's languages that espeak-ng (the voice of every language but
#: English and Korean) can speak; tests/server/test_protocol.py checks both engines against it.
_LANGUAGE_CODES = (
    "af am ar as az ba be bg bn bs ca cs cy da de el en es et eu fa fi fr gu haw he hi hr ht hu hy id "
    "is it ja ka kk kn ko la lb lt lv mi mk ml mr ms mt my ne nl pa pl pt ro ru sd si sk sl sq sr sv sw "
    "ta te th tk tr tt uk ur uz vi yue zh"
)
LANGUAGES = frozenset(_LANGUAGE_CODES.split())
#: Beta format names -> (encoding, rate); GA format types -> encoding.
BETA_FORMATS = {"pcm16": ("pcm16", 24000), "g711_ulaw": ("g711_ulaw", 8000), "g711_alaw": ("g711_alaw", 8000)}
GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
# Bounds that keep a call's memory and timing sane: a prefix is buffered audio, a silence a wait.
MAX_PREFIX_PADDING_MS = 2000
MIN_SILENCE_MS, MAX_SILENCE_MS = 0, 10_000
MIN_SPEED, MAX_SPEED = 0.25, 2.0
MAX_INSTRUCTIONS = 16_000
MAX_NAME = 64  # voice, model and item ids (turn.item_id is 64 characters in the database)
# The client's tools: OpenAI's name rule, and bounds on what every reply sends the LLM.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128
MAX_TOOL_DESCRIPTION = 4_000
MAX_SCHEMA_CHARS = 16_000  # one tool's parameters, as JSON
MAX_SCHEMA_DEPTH = 32  # nesting of its objects and arrays (the schema check recurses)


def refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _language(value: str) -> str:
    code = value.strip().lower()
    if code and code not in LANGUAGES:
        shown = value if len(value) <= 16 else value[:16] + "..."
        raise ValueError(f"unsupported language {shown!r}; use an ISO-639-1 code such as 'ko' or 'en'")
    return code


def _json_schema(value: dict[str, Any]) -> dict[str, Any]:
    """A function's parameters: a JSON Schema (checked against its metaschema) of an object."""
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except ValueError:
        raise ValueError("must not hold NaN or Infinity") from None
    if size > MAX_SCHEMA_CHARS:
        raise ValueError(f"must be at most {MAX_SCHEMA_CHARS} characters of JSON")
    if _depth(value) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"must nest at most {MAX_SCHEMA_DEPTH} levels deep")
    if value.get("type") != "object":
        raise ValueError('must be a JSON Schema of an object: {"type": "object", "properties": {...}}')
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise ValueError(f"is not a valid JSON Schema: at '{where or '.'}': {e.message[:200]}") from None
    return value


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in `value` (without recursing: the input is the client's)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest


def _tool_name(value: str) -> str:
    """A client tool's name: OpenAI's rule, and none of the companion's own (the server runs those)."""
    if not TOOL_NAME.fullmatch(value):
        raise ValueError("must be 1 to 64 letters, digits, '_' or '-'")
    if value in TOOL_NAMES:
        raise ValueError(f"'{value}' is one of the companion's own tools; choose another name")
    return value


def _distinct(tools: list[FunctionTool]) -> list[FunctionTool]:
    names = [t.name for t in tools]
    if len(set(names)) < len(names):
        raise ValueError("each tool needs a name of its own")
    return tools


def _tool_choice(value: Any) -> str | dict[str, str]:
    """The choice: "auto", "none", "required" or {"type": "function", "name": <a tool's name>}."""
    if isinstance(value, str) and value in ("auto", "none", "required"):
        return value
    name = value.get("name") if isinstance(value, dict) and value.get("type") == "function" else None
    if isinstance(name, str) and TOOL_NAME.fullmatch(name):
        return {"type": "function", "name": name}
    raise ValueError(
        """must be "auto", "none", "required" or {"type": "function", "name": <one of the tools>}"""
    )


Language = Annotated[str, Field(max_length=16), AfterValidator(_language)]
FunctionName = Annotated[str, AfterValidator(_tool_name)]
Name = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(refuse_nul)]
Instructions = Annotated[str, Field(max_length=MAX_INSTRUCTIONS), AfterValidator(refuse_nul)]
Modality = Literal["text", "audio"]


class Wire(BaseModel):
    """A client-sent object: exact types (no "3" for 3), unknown fields ignored, immutable."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


ToolChoiceWire = Annotated[Literal["auto", "none", "required"] | dict[str, str], PlainValidator(_tool_choice)]


class FunctionTool(Wire):
    """One of the client's tools: `{"type": "function", "name", "description", "parameters"}`."""

    type: Literal["function"] = "function"  # (no MCP servers here)
    name: FunctionName
    description: Annotated[str, Field(max_length=MAX_TOOL_DESCRIPTION), AfterValidator(refuse_nul)] = ""
    #: Left out: no parameters.
    parameters: Annotated[dict[str, Any], AfterValidator(_json_schema)] | None = None

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters or {"type": "object", "properties": {}})


class ToolsUpdate(Wire):
    """`tools` and `tool_choice`, where a session or one response sets them."""

    tools: Annotated[list[FunctionTool], AfterValidator(_distinct)] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceWire | None = None

    @field_validator("tool_choice")
    @classmethod
    def _among_tools(cls, choice: ToolChoiceWire | None, info: ValidationInfo) -> ToolChoiceWire | None:
        tools = info.data.get("tools")
        if isinstance(choice, dict) and tools is not None and choice["name"] not in {t.name for t in tools}:
            raise ValueError(f"names '{choice['name']}', which is not one of the tools")
        return choice

    def applied(self, current: ClientTools, param: str) -> ClientTools:
        """`current` with this update's tools and choice. Raises SessionConflict (at `param`) when
        the choice names a function the resulting tools lack."""
        specs = current.specs if self.tools is None else tuple(t.spec() for t in self.tools)
        choice, function = current.choice, current.function
        if isinstance(self.tool_choice, dict):
            choice, function = "function", self.tool_choice["name"]
        elif self.tool_choice is not None:
            choice, function = self.tool_choice, None
        if function is not None and function not in {s.name for s in specs}:
            raise SessionConflict(f"tool_choice names '{function}', which is not one of the tools", param)
        return ClientTools(specs, choice, function)


class TurnDetectionUpdate(Wire):
    """`turn_detection`: null (or absent) fields take the core's defaults."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"  # semantic_vad runs as server_vad
    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    prefix_padding_ms: int | None = Field(None, ge=0, le=MAX_PREFIX_PADDING_MS)
    silence_duration_ms: int | None = Field(None, ge=MIN_SILENCE_MS, le=MAX_SILENCE_MS)
    create_response: bool | None = None
    interrupt_response: bool | None = None


class TranscriptionUpdate(Wire):
    """`input_audio_transcription` (beta) or `audio.input.transcription` (GA)."""

    model: Name | None = None
    #: Null or "" = the caller's profile language.
    language: Language | None = None
    prompt: Instructions | None = None


class FormatUpdate(Wire):
    """A GA audio format: `{"type": "audio/pcm", "rate": 24000}`, `{"type": "audio/pcmu"}`, ..."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    #: pcm16 rates the core resamples from and to (OpenAI itself takes only 24000).
    rate: Literal[8000, 16000, 24000, 48000] | None = None

    def audio_format(self) -> AudioFormat:
        encoding = GA_FORMATS[self.type]
        if encoding != "pcm16":
            return AudioFormat(encoding, 8000)
        return AudioFormat("pcm16", int(self.rate or 24000))


BetaFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]


class AudioInputUpdate(Wire):
    format: FormatUpdate | None = None
    transcription: TranscriptionUpdate | None = None
    #: null turns server VAD off (set but None), absent keeps it (not in model_fields_set).
    turn_detection: TurnDetectionUpdate | None = None


class AudioOutputUpdate(Wire):
    format: FormatUpdate | None = None
    voice: Name | None = None
    speed: float | None = Field(None, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)


class AudioUpdate(Wire):
    input: AudioInputUpdate | None = None
    output: AudioOutputUpdate | None = None


class SessionConflict(ValueError):
    """An update valid on its own but not with what it changes; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class SessionUpdate(ToolsUpdate):
    """The `session` of a session.update, beta and GA fields side by side."""

    type: Literal["realtime"] | None = None
    model: Name | None = None
    instructions: Instructions | None = None
    voice: Name | None = None
    speed: float | None = Field(None, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)
    modalities: list[Modality] | None = Field(None, max_length=2)
    output_modalities: list[Modality] | None = Field(None, max_length=2)
    input_audio_format: BetaFormat | None = None
    output_audio_format: BetaFormat | None = None
    input_audio_transcription: TranscriptionUpdate | None = None
    turn_detection: TurnDetectionUpdate | None = None
    audio: AudioUpdate | None = None


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server VAD settings in force; the defaults are the core's (`CallConfig`)."""

    threshold: float = _CORE.threshold
    prefix_padding_ms: int = _CORE.prefix_padding_ms
    silence_duration_ms: int = _CORE.silence_duration_ms
    create_response: bool = _CORE.create_response
    interrupt_response: bool = _CORE.interrupt_response

    @classmethod
    def of(cls, update: TurnDetectionUpdate) -> TurnDetection:
        given = {k: v for k, v in update.model_dump(exclude={"type"}).items() if v is not None}
        return cls(**given)

    def to_json(self) -> dict[str, Any]:
        return {"type": "server_vad", **dataclasses.asdict(self)}


@dataclass(frozen=True, slots=True)
class Session:
    """The session as the client sees it (what session.created/updated echo). Immutable: an update
    makes a new one."""

    id: str = field(default_factory=lambda: f"sess_{secrets.token_hex(10)}")
    model: str = "silvertalk"
    instructions: str = ""
    voice: str = "default"
    input_format: AudioFormat = PCM16_24K
    output_format: AudioFormat = PCM16_24K
    #: None: the caller's profile language.
    language: str | None = None
    transcription_model: str = "whisper-1"
    #: None: turn detection off (the client commits and asks for responses itself).
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    speed: float | None = None
    modalities: tuple[str, ...] = ("audio", "text")
    #: The client's own functions and `tool_choice`.
    tools: ClientTools = field(default_factory=ClientTools)

    def updated(self, u: SessionUpdate) -> Session:
        """This session with a (validated) update applied; GA fields win over beta ones.
        Raises SessionConflict for a tool_choice naming a function the session will not have."""
        changes: dict[str, Any] = {"tools": u.applied(self.tools, "session.tool_choice")}
        if u.instructions is not None:
            changes["instructions"] = u.instructions
        if u.voice is not None:
            changes["voice"] = u.voice
        if u.speed is not None:
            changes["speed"] = u.speed
        if u.modalities is not None:
            changes["modalities"] = tuple(u.modalities)
        if u.input_audio_format is not None:
            changes["input_format"] = AudioFormat(*BETA_FORMATS[u.input_audio_format])
        if u.output_audio_format is not None:
            changes["output_format"] = AudioFormat(*BETA_FORMATS[u.output_audio_format])
        if "turn_detection" in u.model_fields_set:
            changes["turn_detection"] = _turn_detection(u.turn_detection)
        if u.input_audio_transcription is not None:
            changes |= _transcription(u.input_audio_transcription)
        inp = u.audio.input if u.audio is not None else None
        out = u.audio.output if u.audio is not None else None
        if inp is not None:
            if inp.format is not None:
                changes["input_format"] = inp.format.audio_format()
            if "turn_detection" in inp.model_fields_set:
                changes["turn_detection"] = _turn_detection(inp.turn_detection)
            if inp.transcription is not None:
                changes |= _transcription(inp.transcription)
        if out is not None:
            if out.format is not None:
                changes["output_format"] = out.format.audio_format()
            if out.voice is not None:
                changes["voice"] = out.voice
            if out.speed is not None:
                changes["speed"] = out.speed
        return dataclasses.replace(self, **changes)

    def to_json(self, ga: bool) -> dict[str, Any]:
        transcription = {"model": self.transcription_model, "language": self.language}
        td = self.turn_detection.to_json() if self.turn_detection is not None else None
        tools = tools_json(self.tools)
        if not ga:
            return {
                "id": self.id,
                "object": "realtime.session",
                "model": self.model,
                "modalities": list(self.modalities),
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": self.input_format.encoding,
                "output_audio_format": self.output_format.encoding,
                "input_audio_transcription": transcription,
                "turn_detection": td,
                **tools,
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
                    "turn_detection": td,
                },
                "output": {
                    "format": _ga_format(self.output_format),
                    "voice": self.voice,
                    "speed": self.speed or 1.0,
                },
            },
            **tools,
        }


def tools_json(tools: ClientTools) -> dict[str, Any]:
    """`tools` and `tool_choice` as the session echoes them."""
    choice: str | dict[str, str] = tools.choice
    if tools.function is not None:
        choice = {"type": "function", "name": tools.function}
    return {
        "tools": [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
            for t in tools.specs
        ],
        "tool_choice": choice,
    }


def _turn_detection(update: TurnDetectionUpdate | None) -> TurnDetection | None:
    return None if update is None else TurnDetection.of(update)


def _transcription(t: TranscriptionUpdate) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "language" in t.model_fields_set:
        changes["language"] = t.language or None
    if t.model is not None:
        changes["transcription_model"] = t.model
    return changes


def _ga_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.encoding == "pcm16":
        return {"type": "audio/pcm", "rate": fmt.rate}
    return {"type": "audio/pcmu" if fmt.encoding == "g711_ulaw" else "audio/pcma"}
