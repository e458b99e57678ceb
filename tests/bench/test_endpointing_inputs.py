"""The endpointing benchmark's inputs: Piper sentences with pauses exactly where and as long as said."""

from __future__ import annotations

import itertools

import numpy as np

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
        assert abs(segments[-1][1] - u.turn.last_voiced_s) < 0.05
        # After the label: silence only (past the resampler's ringing of the last sample, 10 ms).
        tail = u.turn.pcm[int((u.turn.last_voiced_s + 0.01) * inputs.RATE) :]
        assert np.abs(tail).max() < 100


def test_the_korean_text_rule_is_scored() -> None:
    """The benchmark reports the text rule over every labelled Korean transcript."""
    result = endpointing.korean_text_rule()
    assert result["transcripts"] >= 30 and result["right"] == result["transcripts"]
