"""The endpointing benchmark's inputs: Piper sentences with pauses exactly where and as long as said."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import endpointing, inputs


def test_paused_utterances_hold_their_pauses_and_end_at_the_label() -> None:
    """Each paused utterance has a silence of its pause length inside, and its label is its last word."""
    utterances = endpointing.utterances(quick=True)
    paused = [u for u in utterances if u.pauses]
    assert paused and any(not u.pauses for u in utterances)
    for u in paused:
        segments = inputs.voiced_segments(u.turn.pcm, inputs.RATE, min_gap_s=0.5, min_len_s=0.05)
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(segments)]
        assert len(gaps) >= len(u.pauses), (u.turn.name, segments)
        for pause in u.pauses:
            assert any(abs(gap - pause) < 0.1 for gap in gaps), (u.turn.name, pause, gaps)
        assert abs(segments[-1][1] - u.turn.last_voiced_s) < 0.05, (
            u.turn.name,
            segments,
            u.turn.last_voiced_s,
        )
        # After the label: silence only (past the resampler's ringing of the last sample, 10 ms).
        tail = u.turn.pcm[int((u.turn.last_voiced_s + 0.01) * inputs.RATE) :]
        assert np.abs(tail).max() < 100


def test_the_pausing_caller_alternates_paused_and_complete_sentences() -> None:
    """The third caller says a paused sentence, then a complete one, and so on; its turns have
    names of their own (results are keyed by name) and the same audio."""
    utterances = endpointing.utterances(quick=True)
    mixed = endpointing.pausing_caller(utterances)
    assert len(mixed) >= 4
    assert [bool(u.pauses) for u in mixed] == [True, False] * (len(mixed) // 2)
    names = {u.turn.name for u in utterances}
    assert all(u.turn.name.startswith("mixed-") and u.turn.name not in names for u in mixed)
    originals = {u.turn.name: u for u in utterances}
    for u in mixed:
        original = originals[u.turn.name.removeprefix("mixed-")]
        assert np.array_equal(u.turn.pcm, original.turn.pcm) and u.pauses == original.pauses


def test_the_korean_text_rule_is_scored() -> None:
    """The benchmark reports the text rule over every labelled Korean transcript."""
    result = endpointing.korean_text_rule()
    assert result["transcripts"] >= 30 and result["right"] == result["transcripts"]


def test_pauses_bridged_on_a_doubted_ending_are_counted_from_the_servers_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The core logs every pause a turn lives through with the wait that bridged it; the benchmark
    counts those bridged on Whisper's doubt in the last word (the log's own lines, as the server
    writes them)."""
    from pipeline.engines.base import Transcript
    from pipeline.turn_end import EndOfTurn, TurnEndPolicy

    def spawn(coro: Any) -> Any:
        coro.close()  # no audio model in this test: nothing is ever spawned

    turn_end = EndOfTurn(None, TurnEndPolicy(end_word_p=0.55, end_alt_p=0.12), spawn, lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="pipeline.turn_end"):
        turn_end.begin()
        turn_end.paused(lambda: np.zeros(0, np.int16))
        doubted = Transcript("We use 2.", "en", end_prob=0.24)  # finished-looking, doubted
        turn_end.silence_ms(doubted, "en", 700)
        turn_end.resumed(1200)
        turn_end.silence_ms(Transcript("We use 2 grow tomatoes.", "en", end_prob=0.9), "en", 700)
        turn_end.resumed(60)  # a gap between words the end of turn was never told of: not a pause
        turn_end.paused(lambda: np.zeros(0, np.int16))
        turn_end.resumed(600)
        turn_end.paused(lambda: np.zeros(0, np.int16))  # "went to them." with "the" weighed
        them = Transcript(
            "We went to them.", "en", end_prob=0.64, end_alternatives=(("We went to the", 0.22),)
        )
        turn_end.silence_ms(them, "en", 700)
        turn_end.resumed(1500)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = tmp_path / "server.log"
    log.write_text("\n".join(fmt.format(r) for r in caplog.records) + "\n", encoding="utf-8")
    assert endpointing.bridged_pauses(log) == {
        "pauses": 3,
        "doubted_ending_ms": [1200],
        "heard_unfinished_ms": [1500],
    }
