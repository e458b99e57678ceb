"""Smoke tests of the benchmark harness: input labels, event analysis, tables. Nothing here is timed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import inputs, report
from bench.inputs import RATE
from bench.v2v import analyse


def test_fixture_labels_match_the_audio() -> None:
    """Relabelling the telephone recording from its energy finds the committed ten sentence ends."""
    labels = inputs.load_labels()["osr_us_000_0034_8k.wav"]["segments"]
    pcm, rate = inputs.read_wav(inputs.FIXTURES / "osr_us_000_0034_8k.wav")
    found = inputs.voiced_segments(pcm, rate, min_gap_s=0.75)
    assert len(found) == len(labels) == 10
    for (start, end), label in zip(found, labels, strict=True):
        assert abs(end - label["last_voiced_s"]) <= 0.02
        assert abs(start - label["start_s"]) <= 0.02
    assert [s["text"] for s in labels] == list(inputs.OSR_SENTENCES)


def test_fixture_turns_are_cut_at_their_labels() -> None:
    """Each fixture turn is 24 kHz audio with a lead-in, its labelled speech end, then a short tail."""
    turns = inputs.fixture_turns()
    assert len(turns) == 11
    for t in turns:
        assert t.pcm.dtype == np.int16
        assert t.duration_s - t.last_voiced_s == pytest.approx(inputs.TAIL_S, abs=0.05)
        # the 100 ms before the label hold speech, louder than the tail after it
        db = inputs.frame_dbfs(t.pcm, RATE)
        last = round(t.last_voiced_s * 100)
        assert db[last - 10 : last].max() > db[last + 5 :].mean()


def test_saved_turns_load_back(tmp_path: Path) -> None:
    """Prepared turns survive the trip to the callers process."""
    turns = inputs.fixture_turns()[:2]
    inputs.save(turns, tmp_path / "t.npz")
    back = inputs.load(tmp_path / "t.npz")
    assert [(t.name, t.text, t.last_voiced_s) for t in back] == [
        (t.name, t.text, t.last_voiced_s) for t in turns
    ]
    assert all(np.array_equal(a.pcm, b.pcm) for a, b in zip(turns, back, strict=True))


def test_word_errors_counts_edits() -> None:
    """The relabelling check counts substitutions, insertions and deletions, ignoring case and punctuation."""
    assert inputs.word_errors("A severe storm tore down the barn.", "a severe storms tore down the barn") == 1
    assert inputs.word_errors("one two three", "one three") == 1
    assert inputs.word_errors("one two", "One, two!") == 0


def _turn() -> inputs.Turn:
    return inputs.Turn("osr-01", "A gold ring.", np.zeros(RATE, dtype=np.int16), 0.8)


def test_analyse_measures_voice_to_voice_and_counts_a_split_sentence() -> None:
    """A turn answered twice is cut in two; voice-to-voice runs from the label to the first audio after it."""
    label_t = 100.0
    window: list[tuple[float, dict[str, Any]]] = [
        (99.5, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 500}),
        (99.6, {"type": "input_audio_buffer.committed"}),
        (99.7, {"type": "response.created", "response": {"id": "r1"}}),
        (99.9, {"type": "response.output_audio.delta", "response_id": "r1", "bytes": 960}),
        (100.7, {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1520}),
        (100.8, {"type": "input_audio_buffer.committed"}),
        (
            100.9,
            {"type": "conversation.item.input_audio_transcription.completed", "transcript": "A gold ring."},
        ),
        (101.0, {"type": "response.created", "response": {"id": "r2"}}),
        (101.25, {"type": "response.output_audio.delta", "response_id": "r2", "bytes": 960}),
        (
            101.5,
            {
                "type": "response.done",
                "response": {
                    "id": "r2",
                    "status": "completed",
                    "silvertalk_timings": {"first_audio_ms": 420.0},
                },
            },
        ),
    ]
    r = analyse(_turn(), window, label_t, label_pos_ms=1500.0)
    assert r.v2v_ms is not None and math.isclose(r.v2v_ms, 1250.0, abs_tol=1e-6)
    assert r.endpoint_ms is not None and math.isclose(r.endpoint_ms, 700.0, abs_tol=1e-6)
    assert r.vad_end_error_ms == 20.0
    assert (r.commits, r.responses, r.cut, r.status) == (2, 2, True, "completed")
    assert r.timings == {"first_audio_ms": 420.0}
    assert not r.heard_whole
    # The server joined the first part into the second: cut, but heard as one sentence.
    joined = [*window[:4], (100.85, {"type": "conversation.item.deleted", "item_id": "i1"}), *window[4:]]
    r = analyse(_turn(), joined, label_t, label_pos_ms=1500.0)
    assert (r.cut, r.rejoined, r.heard_whole) == (True, 1, True)


def test_analyse_reports_a_turn_without_reply() -> None:
    """No reply audio after the label leaves voice-to-voice empty instead of inventing a number."""
    r = analyse(_turn(), [(100.5, {"type": "input_audio_buffer.speech_stopped"})], 100.0, 800.0)
    assert r.v2v_ms is None and r.responses == 0 and not r.cut


def test_load_rows_carry_the_server_stages_and_capacity_reads_them() -> None:
    """A load row has the server's own stage timings (p50, ms after the end of speech), so a
    slower voice-to-voice under load shows which stage waited; capacity keeps to 1.3x one caller."""
    from dataclasses import replace

    from bench.load import STAGES, capacity, summarise

    done = {
        "type": "response.done",
        "response": {"id": "r1", "status": "completed", "silvertalk_timings": {"transcript_ms": 300.0}},
    }
    events = [
        (100.4, {"type": "input_audio_buffer.speech_stopped"}),
        (100.7, {"type": "response.output_audio.delta", "response_id": "r1"}),
        (101.0, done),
    ]
    one = analyse(_turn(), events, 100.0, 800.0)
    assert one.timings  # the timings are read where the gateway puts them
    slow = replace(one, v2v_ms=1000.0, timings={**one.timings, "transcript_ms": 700.0})
    rows = [summarise("in-process", 1, [[one]]), summarise("in-process", 8, [[slow], [slow]])]
    assert set(rows[0]["stages_p50_ms"]) == set(STAGES)
    assert (
        rows[0]["stages_p50_ms"]["transcript_ms"] == 300.0
        and rows[1]["stages_p50_ms"]["transcript_ms"] == 700.0
    )
    assert math.isnan(rows[0]["stages_p50_ms"]["tts_first_audio_ms"])  # not reported: not invented
    assert capacity(rows) == 1  # 1000 ms is over 1.3 x 700


def test_percentiles_and_tables() -> None:
    """Percentiles interpolate, missing values are skipped, and tables render '-' for them."""
    s = report.summary([1.0, 2.0, 3.0, 4.0, None])
    assert (s["n"], s["p50"], s["max"]) == (4, 2.5, 4.0)
    assert math.isnan(report.summary([])["p50"])
    text = report.table("T", ["stage", "p50"], [["a", 1.234], ["b", math.nan]], 1)
    lines = text.splitlines()
    assert lines[0] == "### T" and "1.2" in lines[4] and lines[5].rstrip().endswith("- |")


def test_results_json_has_no_nan(tmp_path: Path) -> None:
    """Results are valid JSON with the machine recorded; NaN becomes null."""
    path = report.write("x", {"value": math.nan, "rows": [{"p50": 1.0}]}, tmp_path)
    data = json.loads(path.read_text())
    assert data["value"] is None and data["rows"] == [{"p50": 1.0}] and data["machine"]["cores"]


def test_floor_differences_per_turn() -> None:
    """v2v minus the floor, minus the wait, and minus the longer of the two are computed per turn."""
    from bench.floor import compare

    floor = [{"name": "a", "floor_ms": 1000.0}, {"name": "b", "floor_ms": 900.0}]
    v2v = {"turns": [{"name": "a", "v2v_ms": 1100.0, "endpoint_ms": 700.0}, {"name": "b", "v2v_ms": None}]}
    (d,) = compare(floor, v2v)
    assert (d["minus_floor_ms"], d["minus_floor_and_wait_ms"], d["overhead_ms"]) == (100.0, -600.0, 100.0)


async def test_instant_engines_follow_the_engine_protocols() -> None:
    """The calls benchmark's engines are real SpeechToText/LanguageModel/TextToSpeech implementations."""
    from bench import engines
    from pipeline.engines.base import ChatContext, LanguageModel, SpeechToText, TextToSpeech

    stt, llm, tts = engines.load_stt(None), engines.load_llm(None), engines.load_tts(None)
    assert isinstance(stt, SpeechToText) and isinstance(llm, LanguageModel) and isinstance(tts, TextToSpeech)
    assert (await stt.transcribe(np.zeros(1600, dtype=np.int16), language="en")).text
    assert [d async for d in llm.stream([], ChatContext(system_prompt=""))]
    chunks = [c async for c in tts.synthesize("Hi.", language="en")]
    assert len(chunks[0]) == tts.sample_rate // 2


def test_callers_frames_are_20_ms_base64() -> None:
    """Simulated callers send 20 ms pcm16 frames at 24 kHz: 960 bytes, 1280 base64 characters."""
    from bench.callers import frames_of

    frames = frames_of(inputs.fixture_turns()[:1])
    assert {len(f) for f in frames} == {1280}
    assert len(frames) * 0.02 >= inputs.fixture_turns()[0].duration_s + 2.0


async def test_the_tier_bench_reads_each_stream_to_its_end() -> None:
    """`bench tier` times a stream to its first chunk but reads all of it, so no synthesis is left
    running to slow the next request down; a stream with no audio is an error, not a time."""
    from collections.abc import AsyncIterator

    from bench.tier import _first_chunk

    read: list[int] = []

    async def stream(n: int) -> AsyncIterator[bytes]:
        for i in range(n):
            read.append(i)
            yield b"\0\0"

    first, compute = await _first_chunk(stream(3))
    assert read == [0, 1, 2] and compute is None and first > 0
    with pytest.raises(RuntimeError, match="without audio"):
        await _first_chunk(stream(0))


def test_load_callers_can_say_their_sentences_several_times() -> None:
    """`bench load --rounds 3`: each caller says the sentences three times over, the repeats
    named apart, so one caller's p50 rests on 30 turns rather than 10."""
    from bench.load import caller_turns

    once, thrice = caller_turns(10), caller_turns(10, rounds=3)
    assert [t.name for t in once] == [f"osr-{i:02d}" for i in range(1, 11)]
    assert len(thrice) == 30 and len({t.name for t in thrice}) == 30
    assert [t.text for t in thrice] == [t.text for t in once] * 3
    assert thrice[10].name == "osr-01.2" and np.array_equal(thrice[10].pcm, once[0].pcm)
