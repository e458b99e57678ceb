"""The end-of-turn decision table: words, sound and the speaker's own pauses."""

from __future__ import annotations

import pytest

from pipeline.completeness import Completeness, Verdict
from pipeline.turn_end import TurnEndPolicy, decide

POLICY = TurnEndPolicy(finished_ms=350, max_ms=2500, doubt_ms=1600, audio_threshold=0.5)
DONE = Verdict(Completeness.COMPLETE, "ends on 'afternoon'")
OPEN = Verdict(Completeness.INCOMPLETE, "ends on the function word 'to'")
UNSURE = Verdict(Completeness.UNSURE, "no known ending")


@pytest.mark.parametrize(
    ("words", "audio_p", "learned", "want"),
    [
        (OPEN, 0.99, 700, 2500),  # unfinished words win over a confident model
        (None, 0.99, 700, 2500),  # no transcript yet: wait, decide again when it comes
        (DONE, 0.9, 700, 350),  # both finished: answer quickly
        (DONE, None, 700, 700),  # the model has not answered yet: the speaker's own wait
        (DONE, 0.1, 700, 1600),  # disagreement: longer than a mid-sentence pause
        (DONE, 0.1, 2000, 2000),  # a speaker whose pauses are longer still keeps them
        (UNSURE, 0.9, 900, 900),
        (UNSURE, 0.2, 900, 1600),
        (UNSURE, None, 900, 1600),
    ],
)
def test_the_decision_table(words: Verdict | None, audio_p: float | None, learned: int, want: int) -> None:
    """Each row of the module's table gives the silence it promises."""
    assert decide(words, audio_p, learned, POLICY).silence_ms == want


def test_waits_stay_within_the_bounds() -> None:
    """A learned wait beyond the maximum is capped; below the finished wait it is raised."""
    assert decide(DONE, None, 9000, POLICY).silence_ms == 2500
    assert decide(DONE, None, 100, POLICY).silence_ms == 350


def test_a_decision_carries_its_inputs_for_the_log() -> None:
    """The stored timings say what was decided and why."""
    d = decide(DONE, 0.8123, 700, POLICY)
    assert d.as_timings() == {
        "end_silence_ms": 350.0,
        "end_reason": "words and sound finished",
        "end_learned_ms": 700.0,
        "end_words": "complete",
        "end_audio_p": 0.812,
    }


@pytest.mark.parametrize(
    ("words", "audio_p", "patience", "want"),
    [
        (DONE, 0.9, 1500, 1500),  # both finished, but this caller went on after such a pause
        (DONE, 0.1, 1500, 1600),  # a longer wait already covers it
        (UNSURE, 0.9, 1800, 1800),
        (DONE, 0.9, 9000, 2500),  # never past the maximum
        (OPEN, 0.9, 1500, 2500),  # unfinished words wait the maximum anyway
    ],
)
def test_a_callers_patience_is_a_floor_under_the_table(
    words: Verdict, audio_p: float, patience: int, want: int
) -> None:
    """Once a caller went on after a finished-looking pause, no turn that is not plainly
    unfinished ends sooner than their patience, and the reason says so."""
    d = decide(words, audio_p, 700, POLICY, patience)
    assert d.silence_ms == want
    if want == patience:
        assert d.reason.endswith("this caller went on after such pauses")
        assert d.as_timings()["end_patience_ms"] == patience


def test_finished_words_wait_for_the_sound_being_judged() -> None:
    """The model was asked and has not answered: finished words do not end the turn on the learned
    silence alone (a doubtful sound must still be able to make it wait); with no model they do."""
    pending = decide(DONE, None, 700, POLICY, sound_pending=True)
    assert pending.silence_ms == 1600 and pending.reason == "words finished, sound being judged"
    assert decide(DONE, None, 700, POLICY).silence_ms == 700


@pytest.mark.parametrize(
    ("words", "audio_p", "end_p", "want"),
    [
        (DONE, 0.99, 0.38, 1600),  # "Could you remind me too?": the words and the sound read
        (DONE, None, 0.38, 1600),  # finished, the decoder doubted its last word: wait the doubt
        (DONE, 0.99, 0.55, 350),  # at the threshold: finished
        (DONE, 0.99, None, 350),  # an engine that does not say: as before
        (OPEN, 0.99, 0.1, 2500),  # unfinished words wait the maximum anyway
        (UNSURE, 0.9, 0.1, 900),  # unsure words already lean on the sound and the speaker
    ],
)
def test_a_doubted_ending_keeps_finished_words_from_ending_the_turn(
    words: Verdict, audio_p: float | None, end_p: float | None, want: int
) -> None:
    """Below the policy's `end_word_p`, finished-looking words count for no more than a doubt."""
    policy = TurnEndPolicy(finished_ms=350, max_ms=2500, doubt_ms=1600, audio_threshold=0.5, end_word_p=0.55)
    d = decide(words, audio_p, 900 if words is UNSURE else 700, policy, end_p=end_p)
    assert d.silence_ms == want
    if end_p is not None:
        assert d.as_timings()["end_word_p"] == end_p
    assert (
        decide(words, audio_p, 700, POLICY, end_p=end_p).silence_ms
        == decide(words, audio_p, 700, POLICY).silence_ms
    )
