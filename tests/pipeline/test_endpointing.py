"""The adaptive endpointer: turns start on speech, end after a silence fitted to the speaker."""

from __future__ import annotations

from pipeline.endpointing import Endpointer, PauseBegan, SpeechResumed, TurnEnded, TurnStarted


def feed(
    ep: Endpointer, pattern: list[tuple[bool, int]], t0: int = 0
) -> tuple[list[tuple[int, object]], int]:
    """Feed (is_speech, duration_ms) runs as 20 ms frames; return (time, event) pairs and the end time."""
    out: list[tuple[int, object]] = []
    t = t0
    for voiced, ms in pattern:
        for _ in range(ms // 20):
            out += [(t, e) for e in ep.feed(voiced, t)]
            t += 20
    return out, t


def kinds(events: list[tuple[int, object]]) -> list[str]:
    return [type(e).__name__ for _, e in events]


def test_turn_starts_with_prefix_padding_and_ends_after_min_silence() -> None:
    """Speech opens a turn padded by prefix_padding_ms; 700 ms of silence (the floor) closes it."""
    ep = Endpointer(silence_ms=500, prefix_padding_ms=300, min_silence_ms=700)
    events, _ = feed(ep, [(False, 1000), (True, 1200), (False, 1000)])
    assert kinds(events) == ["TurnStarted", "PauseBegan", "TurnEnded"]
    started = events[0][1]
    assert isinstance(started, TurnStarted) and started.voiced_ms == 1000 and started.start_ms == 700
    t_pause, pause = events[1]
    assert isinstance(pause, PauseBegan) and pause.speech_end_ms == 2200 and t_pause < 2200 + 200
    t_end, end = events[2]
    assert isinstance(end, TurnEnded) and end.speech_end_ms == 2200 and t_end + 20 - 2200 == 700


def test_a_click_is_not_speech() -> None:
    """One or two voiced frames in silence do not start a turn."""
    ep = Endpointer()
    events, _ = feed(ep, [(False, 200), (True, 40), (False, 500), (True, 20), (False, 500)])
    assert events == []


def test_pause_then_resume_keeps_the_turn_and_announces_resume() -> None:
    """A 400 ms pause inside speech announces a pause, then resumption, and no turn end."""
    ep = Endpointer(min_silence_ms=700)
    events, _ = feed(ep, [(True, 600), (False, 400), (True, 600)])
    assert kinds(events) == ["TurnStarted", "PauseBegan", "SpeechResumed"]
    resumed = events[-1][1]
    assert isinstance(resumed, SpeechResumed) and resumed.pause_ms == 400
    assert list(ep.pauses) == [400]


def test_slow_speaker_mid_sentence_pause_does_not_end_the_turn() -> None:
    """After a speaker has shown 600-700 ms pauses, their 900 ms mid-sentence pause keeps the turn."""
    ep = Endpointer(silence_ms=500, min_silence_ms=700, max_silence_ms=2000)
    events, _ = feed(
        ep,
        [
            (True, 800),
            (False, 600),
            (True, 900),
            (False, 660),
            (True, 700),
            (False, 620),
            (True, 800),
            (False, 900),
            (True, 900),
        ],
    )
    assert "TurnEnded" not in kinds(events)
    assert ep.required_silence_ms() > 900
    events, _ = feed(ep, [(False, 2100)], t0=10_000)
    assert kinds(events) == ["PauseBegan", "TurnEnded"]


def test_required_silence_is_clamped() -> None:
    """The adapted silence never goes below min_silence_ms nor above max_silence_ms."""
    ep = Endpointer(silence_ms=300, min_silence_ms=700, max_silence_ms=1500)
    assert ep.required_silence_ms() == 700
    ep.pauses.extend([1400, 1500, 1600])
    assert ep.required_silence_ms() == 1500
    brisk = Endpointer(silence_ms=500, min_silence_ms=700)
    brisk.pauses.extend([150, 200, 180])
    assert brisk.required_silence_ms() == 700


def test_turn_ended_too_early_teaches_the_endpointer() -> None:
    """When the caller carries on soon after we ended their turn, that silence counts as their pause."""
    ep = Endpointer(min_silence_ms=700, max_silence_ms=2000)
    events, _ = feed(ep, [(True, 1000), (False, 900), (True, 1000), (False, 1500)])
    assert kinds(events) == [
        "TurnStarted",
        "PauseBegan",
        "TurnEnded",
        "TurnStarted",
        "PauseBegan",
        "TurnEnded",
    ]
    assert list(ep.pauses) == [900]
    assert ep.required_silence_ms() == 1350
    ended = [e for _, e in events if isinstance(e, TurnEnded)]
    assert ended[-1].silence_ms == 1350


def test_a_restart_after_hearing_our_answer_is_not_a_pause() -> None:
    """The caller heard 800 ms of us before speaking again: an answer, so nothing is learned."""
    ep = Endpointer(min_silence_ms=700, max_silence_ms=2000)
    _, t = feed(ep, [(True, 1000), (False, 900)])
    ep.heard(800)
    feed(ep, [(True, 1000), (False, 1500)], t)
    assert list(ep.pauses) == []


def test_words_decide_whether_a_restart_was_a_pause() -> None:
    """With words_decide, a quick restart is learned only once told the words before it were unfinished."""
    finished = Endpointer(min_silence_ms=700, max_silence_ms=2000, words_decide=True)
    _, t = feed(finished, [(True, 1000), (False, 900)])
    finished.last_turn_words(finished=True)
    feed(finished, [(True, 1000)], t)
    assert list(finished.pauses) == []
    cut = Endpointer(min_silence_ms=700, max_silence_ms=2000, words_decide=True)
    _, t = feed(cut, [(True, 1000), (False, 900), (True, 1000)])
    assert list(cut.pauses) == []  # the words are not known yet
    cut.last_turn_words(finished=False)
    assert list(cut.pauses) == [900]


def test_end_turn_now_ends_the_turn_with_its_voiced_time() -> None:
    """A client commit ends the turn at once: PauseBegan then TurnEnded carrying the voiced ms."""
    ep = Endpointer()
    assert ep.end_turn_now(0) == []
    _, t = feed(ep, [(True, 600)])
    events = ep.end_turn_now(t)
    assert kinds([(t, e) for e in events]) == ["PauseBegan", "TurnEnded"]
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.voiced_ms == 600 and ended.silence_ms == 0
    assert not ep.in_turn
