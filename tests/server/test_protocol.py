"""The realtime wire protocol without sockets or models: client events parsed, sessions, server events."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from pipeline import events as ev
from pipeline.audio import AudioFormat
from pipeline.engines.base import ToolSpec
from pipeline.tools import ClientTools
from pipeline.turns import CallConfig
from server.realtime import protocol as p
from server.realtime.encoder import Encoder
from server.realtime.session import LANGUAGES, Session, SessionConflict, SessionUpdate, TurnDetection


def parsed(event: dict[str, Any]) -> p.ClientEvent:
    return p.parse(json.dumps(event))


def refusal(raw: str | dict[str, Any]) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.parse(raw if isinstance(raw, str) else json.dumps(raw))
    return info.value


def updated(session: dict[str, Any], start: Session | None = None) -> Session:
    event = parsed({"type": "session.update", "session": session})
    assert isinstance(event, p.UpdateSession)
    return (start or Session()).updated(event.session)


# --- client events ---------------------------------------------------------------------------


def test_every_client_event_type_parses_into_its_class() -> None:
    """Each client event name (the same for beta and GA clients) maps to one typed event."""
    audio = base64.b64encode(b"\x01\x00\x02\x00").decode()
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    samples: dict[str, dict[str, Any]] = {
        "input_audio_buffer.append": {"audio": audio},
        "input_audio_buffer.commit": {},
        "input_audio_buffer.clear": {},
        "session.update": {"session": {}},
        "conversation.item.create": {"item": item},
        "conversation.item.truncate": {"item_id": "item_1", "content_index": 0, "audio_end_ms": 200},
        "conversation.item.delete": {"item_id": "item_1"},
        "response.create": {},
        "response.cancel": {},
    }
    assert set(samples) == set(p.EVENTS)
    for kind, fields in samples.items():
        event = parsed({"type": kind, "event_id": "evt_1", **fields})
        assert type(event) is p.EVENTS[kind] and event.event_id == "evt_1"
    append = parsed({"type": "input_audio_buffer.append", "audio": audio})
    assert isinstance(append, p.AudioAppend) and append.audio == b"\x01\x00\x02\x00"


def test_a_text_item_joins_its_parts_and_keeps_its_id_and_role() -> None:
    """conversation.item.create: GA output_text and beta text parts (assistant), input_text (users)."""
    parts = [{"type": "output_text", "text": "Hello"}, {"type": "text", "text": "there."}]
    event = parsed(
        {"type": "conversation.item.create", "item": {"id": "it_1", "role": "assistant", "content": parts}}
    )
    assert isinstance(event, p.CreateItem)
    assert (event.item.id, event.item.role, event.item.text) == ("it_1", "assistant", "Hello there.")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ('{"type": "session.update", "x": "\\ud800"}', "invalid_json"),  # a lone surrogate
        ("[" * 5000, "invalid_json"),  # nesting Python's json would recurse into
        ("[]", "invalid_event"),
        ("42", "invalid_event"),
        ('{"event_id": "e"}', "invalid_event"),
        ('{"type": 5}', "invalid_event"),
    ],
)
def test_frames_that_are_not_events_are_refused(raw: str, code: str) -> None:
    """Not JSON, not an object, or no string type: refused with a code, nothing echoed."""
    err = refusal(raw)
    assert err.code == code and err.event_id is None


def test_an_unknown_type_is_named_in_the_refusal() -> None:
    """An unknown type is refused with its name (shortened when long) and the event_id echoed."""
    err = refusal({"type": "conversation.item.retrieve", "event_id": "evt_9"})
    assert err.code == "unknown_event_type" and err.event_id == "evt_9"
    assert "conversation.item.retrieve" in str(err)
    assert len(str(refusal({"type": "x" * 10_000}))) < 200


TRUNCATE, CREATE = "conversation.item.truncate", "conversation.item.create"


def truncate(**fields: Any) -> dict[str, Any]:
    return {"type": TRUNCATE, "item_id": "a", "audio_end_ms": 1} | fields


def create(*parts: dict[str, Any], **item: Any) -> dict[str, Any]:
    return {"type": CREATE, "item": {"content": list(parts)} | item}


def text(value: Any) -> dict[str, Any]:
    return {"type": "input_text", "text": value}


@pytest.mark.parametrize(
    ("event", "param"),
    [
        (truncate(content_index="x"), "content_index"),
        (truncate(content_index=1.5), "content_index"),
        (truncate(audio_end_ms=-1), "audio_end_ms"),
        (truncate(audio_end_ms=1e300), "audio_end_ms"),
        (truncate(audio_end_ms=True), "audio_end_ms"),
        ({"type": TRUNCATE, "audio_end_ms": 1}, "item_id"),
        ({"type": "conversation.item.delete", "item_id": 7}, "item_id"),
        ({"type": "conversation.item.delete", "item_id": "../../x"}, "item_id"),
        ({"type": "conversation.item.delete", "item_id": "x" * 65}, "item_id"),
        ({"type": "input_audio_buffer.append", "audio": "!!!"}, "audio"),
        ({"type": "input_audio_buffer.append", "audio": 5}, "audio"),
        ({"type": "input_audio_buffer.append"}, "audio"),
        ({"type": CREATE, "item": "x"}, "item"),
        (create(type="function_call_result"), "item.type"),
        (create(type=7), "item.type"),
        (create(text("Hi"), role="robot"), "item.role"),
        (create(), "item.content"),
        (create({"type": "input_audio"}), "item.content[0].type"),
        (create(text("a\x00")), "item.content[0].text"),
        (create(text("x" * (p.MAX_TEXT + 1))), "item.content[0].text"),
        (create(text("x" * 15_000), text("x" * 15_000)), "item"),
        ({"type": "response.create", "response": "now"}, "response"),
        ({"type": "response.cancel", "response_id": []}, "response_id"),
        ({"type": "response.cancel", "event_id": "a b"}, "event_id"),
        ({"type": "session.update"}, "session"),
        ({"type": "session.update", "session": "x"}, "session"),
    ],
)
def test_every_field_of_a_client_event_is_checked(event: dict[str, Any], param: str) -> None:
    """A wrong type, a bad range, a missing field, NUL or an oversized value: refused, naming the field."""
    err = refusal(event)
    assert err.code == "invalid_value" and err.param == param, str(err)
    assert param in str(err) and "instance of" not in str(err)


def test_a_readable_event_id_is_echoed_and_an_unreadable_one_is_not() -> None:
    """The refusal carries the client's event_id when it is a plain id, never a hostile one."""
    bad = {"type": "conversation.item.delete", "item_id": 1}
    assert refusal({**bad, "event_id": "evt_2"}).event_id == "evt_2"
    assert refusal({**bad, "event_id": "e" * 65}).event_id is None
    assert refusal({**bad, "event_id": 12}).event_id is None


# --- sessions: both shapes -------------------------------------------------------------------


def test_the_beta_session_shape() -> None:
    """Beta fields (input_audio_format, turn_detection, input_audio_transcription) apply and echo."""
    s = updated(
        {
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_alaw",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 800},
            "modalities": ["text"],
            "instructions": "Speak slowly.",
            "voice": "alloy",
        }
    )
    assert s.input_format == AudioFormat("g711_ulaw", 8000) and s.output_format == AudioFormat(
        "g711_alaw", 8000
    )
    assert s.language == "en" and s.voice == "alloy" and s.instructions == "Speak slowly."
    assert s.turn_detection == TurnDetection(silence_duration_ms=800)
    beta = s.to_json(ga=False)
    assert beta["input_audio_format"] == "g711_ulaw" and beta["modalities"] == ["text"]
    assert (
        beta["turn_detection"]["silence_duration_ms"] == 800
        and beta["turn_detection"]["type"] == "server_vad"
    )
    assert beta["input_audio_transcription"] == {"model": "whisper-1", "language": "en"}


def test_the_ga_session_shape() -> None:
    """GA fields (audio.input.format, audio.output.speed, ...) apply and echo in the GA shape."""
    s = updated(
        {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 16000},
                    "transcription": {"language": "ko"},
                    "turn_detection": {"type": "semantic_vad", "threshold": 0.7, "prefix_padding_ms": 100},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 0.8},
            },
            "temperature": 0.7,  # fields we do not use are ignored
        }
    )
    assert s.input_format == AudioFormat("pcm16", 16000) and s.output_format == AudioFormat("g711_ulaw", 8000)
    assert (s.language, s.voice, s.speed) == ("ko", "marin", 0.8)
    ga = s.to_json(ga=True)
    assert ga["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 16000}
    assert ga["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 0.8}
    td = ga["audio"]["input"]["turn_detection"]
    assert td["threshold"] == 0.7 and td["prefix_padding_ms"] == 100 and td["type"] == "server_vad"


def test_turn_detection_defaults_are_the_cores() -> None:
    """Turn-detection defaults come from CallConfig: a fresh session and a bare update agree with it."""
    core = CallConfig()
    expected = {f.name: getattr(core, f.name) for f in dataclasses.fields(TurnDetection)}
    assert dataclasses.asdict(TurnDetection()) == expected
    assert Session().turn_detection == TurnDetection()
    assert updated({"turn_detection": {"threshold": None}}).turn_detection == TurnDetection()


def test_turn_detection_null_turns_it_off_and_absent_keeps_it() -> None:
    """null switches server VAD off (both shapes); an update without the field leaves it as it is."""
    off = updated({"turn_detection": None})
    assert off.turn_detection is None and off.to_json(ga=False)["turn_detection"] is None
    assert updated({"audio": {"input": {"turn_detection": None}}}).turn_detection is None
    assert updated({"voice": "x"}, start=off).turn_detection is None
    assert updated({"audio": {"input": {}}}, start=off).turn_detection is None


def test_language_null_or_empty_means_the_callers_own() -> None:
    """A language of null or "" resets to the caller's profile language; a code is lower-cased."""
    en = updated({"input_audio_transcription": {"language": "EN"}})
    assert en.language == "en"
    assert updated({"input_audio_transcription": {"language": ""}}, start=en).language is None
    assert updated({"audio": {"input": {"transcription": {"language": None}}}}, start=en).language is None
    assert updated({"audio": {"input": {"transcription": {"model": "m"}}}}, start=en).language == "en"


FORMAT = "session.audio.input.format"
BETA_LANGUAGE = "session.input_audio_transcription.language"
GA_LANGUAGE = "session.audio.input.transcription.language"


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"audio": {"input": "x"}}, "session.audio.input"),
        ({"audio": {"output": []}}, "session.audio.output"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}}}, f"{FORMAT}.rate"),
        ({"audio": {"input": {"format": {"type": "audio/opus"}}}}, f"{FORMAT}.type"),
        ({"audio": {"input": {"format": "audio/pcm"}}}, "session.audio.input.format"),
        ({"input_audio_format": "pcm24"}, "session.input_audio_format"),
        ({"turn_detection": {"prefix_padding_ms": 1e300}}, "session.turn_detection.prefix_padding_ms"),
        ({"turn_detection": {"prefix_padding_ms": 2001}}, "session.turn_detection.prefix_padding_ms"),
        ({"turn_detection": {"silence_duration_ms": -1}}, "session.turn_detection.silence_duration_ms"),
        ({"turn_detection": {"threshold": 1.5}}, "session.turn_detection.threshold"),
        ({"turn_detection": {"type": "client_vad"}}, "session.turn_detection.type"),
        ({"turn_detection": {"create_response": "yes"}}, "session.turn_detection.create_response"),
        ({"audio": {"output": {"speed": float("nan")}}}, "session.audio.output.speed"),
        ({"audio": {"output": {"speed": float("inf")}}}, "session.audio.output.speed"),
        ({"audio": {"output": {"speed": 2.5}}}, "session.audio.output.speed"),
        ({"speed": 0.1}, "session.speed"),
        ({"input_audio_transcription": {"language": "xx"}}, BETA_LANGUAGE),
        ({"input_audio_transcription": {"language": "x" * 10_000}}, BETA_LANGUAGE),
        ({"audio": {"input": {"transcription": {"language": "/etc/passwd"}}}}, GA_LANGUAGE),
        ({"instructions": "x" * 16_001}, "session.instructions"),
        ({"instructions": 5}, "session.instructions"),
        ({"voice": "v" * 65}, "session.voice"),
        ({"modalities": ["video"]}, "session.modalities[0]"),
        ({"type": "transcription"}, "session.type"),
    ],
)  # fmt: skip
def test_bad_session_values_are_refused_with_the_field(session: dict[str, Any], param: str) -> None:
    """Types, ranges, formats and languages of a session.update are checked; the refusal names the field."""
    err = refusal(json.dumps({"type": "session.update", "session": session}, allow_nan=True))
    assert err.param == param, str(err)


def test_a_refused_update_changes_nothing_and_an_accepted_one_makes_a_new_session() -> None:
    """Sessions are immutable: an update returns a new one, and a refused update never reaches it."""
    start = Session()
    with pytest.raises(p.ProtocolError):
        p.parse('{"type":"session.update","session":{"voice":"marin","audio":{"output":{"speed":NaN}}}}')
    new = updated({"voice": "marin"}, start=start)
    assert start.voice == "default" and new.voice == "marin" and new.id == start.id


def test_every_language_offered_is_one_whisper_knows_and_espeak_speaks() -> None:
    """LANGUAGES matches the engines: each code is a Whisper language and espeak-ng renders it."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from pipeline.engines.espeak import EspeakTTS

    assert set(_LANGUAGE_CODES) >= LANGUAGES and {"ko", "en"} <= LANGUAGES
    tts = EspeakTTS()
    try:
        silent = [code for code in sorted(LANGUAGES) if len(tts._render("1 2 3", code, 1.0)) < 1000]
    finally:
        tts.close()
    assert silent == []


# --- server events ---------------------------------------------------------------------------


def test_beta_and_ga_server_event_names() -> None:
    """GA clients get response.output_audio.*, beta ones response.audio.*; GA adds conversation.item.added."""
    pcm = np.zeros(480, dtype=np.int16)
    started = ev.ResponseStarted("resp_1", "item_1", None)
    names = {}
    for beta in (False, True):
        enc = Encoder(beta=beta, session=Session())
        out = (
            enc.encode(started)
            + enc.encode(ev.ReplyTextDelta("resp_1", "item_1", "Hi"))
            + enc.encode(ev.ReplyAudio("resp_1", "item_1", pcm))
        )
        names[beta] = [e["type"] for e in out]
        assert all(e["event_id"].startswith("event_") for e in out)
    assert "response.output_audio.delta" in names[False] and "response.audio.delta" in names[True]
    assert "response.output_audio_transcript.delta" in names[False]
    assert "response.audio_transcript.delta" in names[True]
    assert "conversation.item.added" in names[False] and "conversation.item.added" not in names[True]


def test_audio_goes_out_in_the_sessions_output_format() -> None:
    """ReplyAudio is encoded in the session's output format (mu-law: one byte a sample)."""
    pcm = np.zeros(480, dtype=np.int16)
    enc = Encoder(beta=False, session=Session(output_format=AudioFormat("g711_ulaw", 8000)))
    (delta,) = enc.encode(ev.ReplyAudio("resp_1", "item_1", pcm))
    assert len(base64.b64decode(delta["delta"])) == 480


def test_an_error_event_carries_code_param_and_the_clients_event_id() -> None:
    """encoder.error: the OpenAI error shape with our code, the field and the echoed event_id."""
    err = Encoder(beta=False, session=Session()).error("bad", code="invalid_value", param="x", event_id_="e1")
    assert err["type"] == "error"
    assert err["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "bad",
        "param": "x",
        "event_id": "e1",
    }


def test_fields_we_do_not_use_are_ignored_not_refused() -> None:
    """OpenAI session fields we have no use for (temperature, tracing) leave the session as it was."""
    update = SessionUpdate.model_validate({"temperature": 0.6, "tracing": "auto", "max_output_tokens": "inf"})
    start = Session()
    assert start.updated(update) == start


def test_the_pcm_rates_accepted_are_the_ones_the_refusal_names() -> None:
    """audio/pcm takes 8, 16, 24 and 48 kHz (the core resamples) and says so when refusing another."""
    for rate in (8000, 16000, 24000, 48000):
        s = updated({"audio": {"input": {"format": {"type": "audio/pcm", "rate": rate}}}})
        assert s.input_format == AudioFormat("pcm16", rate)
    err = refusal(
        {
            "type": "session.update",
            "session": {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 22050}}}},
        }
    )
    assert "8000, 16000, 24000 or 48000" in str(err)


# --- the client's tools ----------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Today's weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def tool(**fields: Any) -> dict[str, Any]:
    return {**WEATHER, **fields}


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize("ga", [True, False])
def test_tools_and_tool_choice_apply_and_echo_in_both_shapes(ga: bool) -> None:
    """session.tools and tool_choice (top level in the beta and the GA shape) become the core's
    ClientTools and are echoed as OpenAI does; an update without them keeps them."""
    shape = {"type": "realtime"} if ga else {}
    s = updated({**shape, "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}})
    assert [t.name for t in s.tools.specs] == ["get_weather"]
    assert (s.tools.choice, s.tools.function) == ("function", "get_weather")
    assert s.tools.specs[0].parameters == WEATHER["parameters"]
    echo = s.to_json(ga=ga)
    assert echo["tools"] == [WEATHER] and echo["tool_choice"] == {"type": "function", "name": "get_weather"}
    kept = updated({"instructions": "Be brief."}, start=s)
    assert kept.tools == s.tools
    assert Session().to_json(ga=ga)["tools"] == [] and Session().to_json(ga=ga)["tool_choice"] == "auto"
    cleared = updated({"tools": [], "tool_choice": "none"}, start=s)
    assert cleared.tools.specs == () and cleared.tools.offered == () and cleared.tools.choice == "none"


def test_a_tool_without_parameters_takes_none() -> None:
    """Parameters left out: an object with no properties (what OpenAI does), for every engine."""
    s = updated({"tools": [{"type": "function", "name": "hang_up"}]})
    assert s.tools.specs[0].parameters == {"type": "object", "properties": {}}


SCHEMA = "session.tools[0].parameters"


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"tools": "get_weather"}, "session.tools"),
        ({"tools": [tool(name=f"t{i}") for i in range(129)]}, "session.tools"),
        ({"tools": [WEATHER, WEATHER]}, "session.tools"),
        ({"tools": [tool(name="get weather")]}, "session.tools[0].name"),
        ({"tools": [tool(name="")]}, "session.tools[0].name"),
        ({"tools": [tool(name="x" * 65)]}, "session.tools[0].name"),
        ({"tools": [tool(name="날씨")]}, "session.tools[0].name"),
        ({"tools": [tool(name="list_events")]}, "session.tools[0].name"),  # the companion's own
        ({"tools": [{"type": "function"}]}, "session.tools[0].name"),
        ({"tools": [tool(type="mcp", server_label="x")]}, "session.tools[0].type"),
        ({"tools": [tool(description="x" * 4001)]}, "session.tools[0].description"),
        ({"tools": [tool(description="a\x00")]}, "session.tools[0].description"),
        ({"tools": [WEATHER, tool(name="b", parameters="{}")]}, "session.tools[1].parameters"),
        ({"tools": [tool(parameters={"type": "string"})]}, SCHEMA),
        ({"tools": [tool(parameters={"properties": {}})]}, SCHEMA),
        (
            {"tools": [tool(parameters={"type": "object", "properties": {"a": {"type": "strin"}}})]},
            SCHEMA,
        ),
        ({"tools": [tool(parameters={"type": "object", "required": "a"})]}, SCHEMA),
        ({"tools": [tool(parameters={"type": "object", "minProperties": -1})]}, SCHEMA),
        ({"tools": [tool(parameters={"type": "object", "x": "y" * 16_000})]}, SCHEMA),
        ({"tools": [tool(parameters=nested(40))]}, SCHEMA),
        ({"tools": [tool(parameters={"type": "object", "maximum": float("nan")})]}, SCHEMA),
        ({"tool_choice": "sometimes"}, "session.tool_choice"),
        ({"tool_choice": "AUTO"}, "session.tool_choice"),
        ({"tool_choice": 1}, "session.tool_choice"),
        ({"tool_choice": {"type": "function"}}, "session.tool_choice"),
        ({"tool_choice": {"type": "function", "name": "a b"}}, "session.tool_choice"),
        ({"tool_choice": {"type": "mcp", "server_label": "x"}}, "session.tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "session.tool_choice"),
        ({"type": "realtime", "tools": [tool(name="a.b")]}, "session.tools[0].name"),
    ],
)  # fmt: skip
def test_bad_tools_are_refused_with_the_field(session: dict[str, Any], param: str) -> None:
    """Tool names (OpenAI's pattern, not the companion's own, distinct), JSON schemas of an object
    (valid, bounded in size and depth), the count and tool_choice are checked; the field is named."""
    err = refusal(
        json.dumps({"type": "session.update", "event_id": "evt_t", "session": session}, allow_nan=True)
    )
    assert err.code == "invalid_value" and err.param == param and err.event_id == "evt_t", str(err)
    assert len(str(err)) < 400


def test_a_tool_choice_naming_a_missing_tool_conflicts_with_the_session() -> None:
    """A tool_choice valid alone but naming a tool the session lacks (now, or after new tools) is
    refused by the session, naming the field; the session is unchanged."""
    start = updated({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"}})
    with pytest.raises(SessionConflict) as info:
        updated({"tools": [tool(name="call_family")]}, start=start)
    assert info.value.param == "session.tool_choice" and "get_weather" in str(info.value)
    with pytest.raises(SessionConflict):
        updated({"tool_choice": {"type": "function", "name": "call_family"}})
    assert start.tools.function == "get_weather"
    assert updated({"tools": [], "tool_choice": "auto"}, start=start).tools == ClientTools()


def test_response_create_takes_tools_for_that_response() -> None:
    """response.create's response.tools and tool_choice are checked like the session's."""
    event = parsed({"type": "response.create", "response": {"tools": [WEATHER], "tool_choice": "required"}})
    assert isinstance(event, p.CreateResponse) and event.response is not None
    tools = event.response.applied(ClientTools(), "response.tool_choice")
    assert [t.name for t in tools.specs] == ["get_weather"] and tools.first_turn().required
    only_choice = parsed({"type": "response.create", "response": {"tool_choice": "none"}})
    assert isinstance(only_choice, p.CreateResponse) and only_choice.response is not None
    session = ClientTools((ToolSpec("get_weather", ""),))
    assert only_choice.response.applied(session, "response.tool_choice") == ClientTools(session.specs, "none")
    for response, param in (
        ({"tools": [tool(name="bad name")]}, "response.tools[0].name"),
        ({"tool_choice": "maybe"}, "response.tool_choice"),
        ({"tools": [], "tool_choice": {"type": "function", "name": "get_weather"}}, "response.tool_choice"),
    ):
        assert refusal({"type": "response.create", "response": response}).param == param


def test_function_call_and_output_items_parse_into_their_events() -> None:
    """conversation.item.create with a function_call or a function_call_output item."""
    call = parsed(
        create(type="function_call", call_id="call_1", name="get_weather", arguments='{"city": "Seoul"}')
    )
    assert isinstance(call, p.CreateFunctionCall)
    assert (call.item.call_id, call.item.name, call.item.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Seoul"}',
    )
    output = parsed(create(type="function_call_output", call_id="call_1", output="Sunny, 21 C", id="item_9"))
    assert isinstance(output, p.CreateFunctionOutput)
    assert (output.item.call_id, output.item.output, output.item.id) == ("call_1", "Sunny, 21 C", "item_9")
    assert isinstance(parsed(create(type="function_call", name="hang_up")), p.CreateFunctionCall)


OUTPUT, CALL = {"type": "function_call_output", "call_id": "call_1"}, {"type": "function_call", "name": "f"}


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({**OUTPUT, "output": 5}, "item.output"),
        ({**OUTPUT, "output": {"sky": "clear"}}, "item.output"),  # a string, as with OpenAI
        ({**OUTPUT, "output": "a\x00"}, "item.output"),
        ({**OUTPUT, "output": "x" * (p.MAX_OUTPUT + 1)}, "item.output"),
        ({"type": "function_call_output", "output": "ok"}, "item.call_id"),
        ({**OUTPUT, "call_id": "../x", "output": "ok"}, "item.call_id"),
        ({**OUTPUT, "call_id": "c" * 65, "output": "ok"}, "item.call_id"),
        ({**CALL, "name": "get weather"}, "item.name"),
        ({**CALL, "name": "show_photo"}, "item.name"),
        ({"type": "function_call"}, "item.name"),
        ({**CALL, "arguments": "city=Seoul"}, "item.arguments"),
        ({**CALL, "arguments": "[1, 2]"}, "item.arguments"),
        ({**CALL, "arguments": '{"a": NaN}'}, "item.arguments"),
        ({**CALL, "arguments": {"city": "Seoul"}}, "item.arguments"),
        ({**CALL, "call_id": 7}, "item.call_id"),
    ],
)
def test_bad_function_items_are_refused_with_the_field(item: dict[str, Any], param: str) -> None:
    """A function_call_output's call_id and output, a function_call's name and arguments (a JSON
    object in a string) are checked before anything happens."""
    err = refusal({"type": CREATE, "event_id": "evt_f", "item": item})
    assert err.code == "invalid_value" and err.param == param and err.event_id == "evt_f", str(err)


def call_events(beta: bool) -> tuple[Encoder, list[dict[str, Any]]]:
    """A reply that said a few words, then called get_weather: its server events, in order."""
    enc = Encoder(beta=beta, session=Session())
    out = enc.encode(ev.ResponseStarted("resp_1", "item_a", "item_u"))
    out += enc.encode(ev.ReplyTextDelta("resp_1", "item_a", "Let me look. "))
    out += enc.encode(ev.ReplyAudio("resp_1", "item_a", np.zeros(480, dtype=np.int16)))
    call = ev.FunctionCall("item_f", "item_a", "call_1", "get_weather", '{"city": "Seoul"}')
    out += enc.encode(ev.ResponseDone("resp_1", "item_a", "completed", "Let me look.", calls=(call,)))
    return enc, out


def test_a_function_call_goes_out_whole_after_the_spoken_message() -> None:
    """GA: the call's item is added (in progress, no arguments), its arguments are one delta, then
    done (with the name) and the item done; response.done lists the message then the call."""
    _, out = call_events(beta=False)
    names = [e["type"] for e in out]
    start = names.index("response.output_item.added", names.index("response.output_audio.delta"))
    assert names[start:start + 7] == [
        "response.output_item.added", "conversation.item.added", "conversation.item.created",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "conversation.item.done",
    ]  # fmt: skip
    added, _, created, delta, done, item_done = out[start : start + 6]
    assert added["item"] == {
        "id": "item_f", "object": "realtime.item", "status": "in_progress", "call_id": "call_1",
        "type": "function_call", "name": "get_weather", "arguments": "",
    }  # fmt: skip
    assert added["output_index"] == 1 and added["response_id"] == "resp_1"
    assert created["previous_item_id"] == "item_a"
    ids = {"response_id": "resp_1", "item_id": "item_f", "output_index": 1, "call_id": "call_1"}
    assert delta == {
        **ids,
        "type": delta["type"],
        "event_id": delta["event_id"],
        "delta": '{"city": "Seoul"}',
    }
    assert (
        done["arguments"] == '{"city": "Seoul"}'
        and done["name"] == "get_weather"
        and done["call_id"] == "call_1"
    )
    assert item_done["item"] == {**added["item"], "status": "completed", "arguments": '{"city": "Seoul"}'}
    response = out[-1]["response"]
    assert [o["type"] for o in response["output"]] == ["message", "function_call"]
    assert response["output"][1] == item_done["item"] and response["status"] == "completed"
    assert names.index("response.output_item.done") < start  # the message finished first


def test_beta_clients_get_the_call_with_beta_item_events() -> None:
    """A beta client gets conversation.item.created (no .added, no .done) and the same call events."""
    _, out = call_events(beta=True)
    names = [e["type"] for e in out]
    assert "conversation.item.added" not in names and "conversation.item.done" not in names
    assert names.count("conversation.item.created") == 2  # the message, the call
    assert "response.function_call_arguments.done" in names and "response.audio.delta" in names


def test_a_reply_that_only_calls_a_tool_has_no_message_item() -> None:
    """Nothing said: no message item at all (as with OpenAI); the call is output 0 and the only output."""
    enc = Encoder(beta=False, session=Session())
    out = enc.encode(ev.ResponseStarted("resp_2", "item_a", "item_u"))
    assert [e["type"] for e in out] == ["response.created"]  # the message waits for its words
    call = ev.FunctionCall("item_f", "item_u", "call_2", "get_weather", "{}")
    out += enc.encode(ev.ResponseDone("resp_2", "item_a", "completed", "", message=False, calls=(call,)))
    added = [e for e in out if e["type"] == "response.output_item.added"]
    assert [(e["item"]["id"], e["output_index"]) for e in added] == [("item_f", 0)]
    assert not any("audio" in e["type"] or "content_part" in e["type"] for e in out)
    assert [o["id"] for o in out[-1]["response"]["output"]] == ["item_f"]
    # ... and a reply with no words and no call (cancelled at once) still has its message item.
    out = enc.encode(ev.ResponseStarted("resp_3", "item_b", "item_f"))
    out += enc.encode(ev.ResponseDone("resp_3", "item_b", "cancelled", ""))
    assert [o["id"] for o in out[-1]["response"]["output"]] == ["item_b"]
    assert "response.output_item.added" in [e["type"] for e in out]


def test_client_function_items_and_errors_on_them_go_out_as_items_and_named_errors() -> None:
    """A function_call_output the client added is echoed as its item; an error names its field."""
    enc = Encoder(beta=False, session=Session())
    added, created = enc.encode(
        ev.CallItemCreated("item_o", "item_f", "function_call_output", "call_1", output="Sunny")
    )
    assert added["type"] == "conversation.item.added" and created["previous_item_id"] == "item_f"
    assert created["item"] == {
        "id": "item_o", "object": "realtime.item", "status": "completed", "call_id": "call_1",
        "type": "function_call_output", "output": "Sunny",
    }  # fmt: skip
    [err] = enc.encode(
        ev.ErrorEvent("no such call", code="item_create_invalid_call_id", event_id="e1", param="item.call_id")
    )
    assert err["error"]["param"] == "item.call_id" and err["error"]["event_id"] == "e1"
