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
from pipeline.turns import CallConfig
from server.realtime import protocol as p
from server.realtime.encoder import Encoder
from server.realtime.session import LANGUAGES, Session, SessionUpdate, TurnDetection


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
        (create(type="function_call"), "item.type"),
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
            "tools": [],  # fields we do not use are ignored
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
    """OpenAI session fields we have no use for (tools, temperature, tracing) leave the session as it was."""
    update = SessionUpdate.model_validate(
        {"tools": [{"type": "function"}], "temperature": 0.6, "tracing": "auto"}
    )
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
