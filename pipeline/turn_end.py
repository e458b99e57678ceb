"""The end-of-turn decision: how much silence ends this turn, from sound, words and the speaker.

At each pause the core gathers three signals and asks `decide` for the silence that must pass
before the turn is over (it asks again whenever a signal arrives or changes):

1. the words: `pipeline.completeness.judge` on the transcript so far (None while decoding);
2. the sound: the audio end-of-turn model's probability that the speaker has finished (Smart Turn;
   None until it has answered, or when no model is configured);
3. the speaker: the silence their own pauses call for (`Endpointer.required_silence_ms`).

The table, older speakers first (being answered mid-sentence is the worst thing a companion can do;
waiting too long after a finished sentence is the second worst)::

    words        sound              silence
    unfinished   any                max_ms       ("My late husband and I used to.")
    no words     any                max_ms       (still decoding: decided again when they come)
    finished     finished           finished_ms  (both agree: answer quickly)
    finished     not yet answered   learned      (the model answers within ~100 ms; decide again)
    finished     unfinished         max(learned, doubt_ms)
    unsure       finished           learned
    unsure       unfinished / none  max(learned, doubt_ms)

Each `Decision` carries its inputs and a reason, so the core can log it and store it with the
turn's timings: a wrong decision can be understood afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.completeness import Completeness, Verdict


@dataclass(frozen=True, slots=True)
class TurnEndPolicy:
    #: Silence that ends a turn whose words and sound both say it is finished.
    finished_ms: int = 350
    #: The longest wait, for a turn whose words are unfinished (older speakers pause 1-2 s).
    max_ms: int = 2500
    #: The wait when the signals disagree: longer than the pauses older speakers make mid-sentence.
    doubt_ms: int = 1600
    #: The audio model's probability above which the sound says "finished".
    audio_threshold: float = 0.5


@dataclass(frozen=True, slots=True)
class Decision:
    #: The silence (ms after the last voiced frame) that ends the turn.
    silence_ms: int
    reason: str
    words: Completeness | None
    words_reason: str | None
    audio_p: float | None
    learned_ms: int

    def as_timings(self) -> dict[str, float | str]:
        """The decision in the shape stored with a turn's timings (numbers and short strings)."""
        out: dict[str, float | str] = {
            "end_silence_ms": float(self.silence_ms),
            "end_reason": self.reason,
            "end_learned_ms": float(self.learned_ms),
        }
        if self.words is not None:
            out["end_words"] = self.words.value
        if self.audio_p is not None:
            out["end_audio_p"] = round(self.audio_p, 3)
        return out


def decide(words: Verdict | None, audio_p: float | None, learned_ms: int, policy: TurnEndPolicy) -> Decision:
    """The silence that ends the turn now, given what is known (see the module's table)."""
    learned = min(max(learned_ms, policy.finished_ms), policy.max_ms)
    doubt = min(max(learned, policy.doubt_ms), policy.max_ms)
    sound_done = None if audio_p is None else audio_p >= policy.audio_threshold
    state = None if words is None else words.state

    if state is None:
        silence, reason = policy.max_ms, "no transcript yet"
    elif state is Completeness.INCOMPLETE:
        silence, reason = policy.max_ms, "words unfinished"
    elif state is Completeness.COMPLETE:
        if sound_done is None:
            silence, reason = learned, "words finished, sound not judged yet"
        elif sound_done:
            silence, reason = policy.finished_ms, "words and sound finished"
        else:
            silence, reason = doubt, "words finished, sound unfinished"
    elif sound_done:
        silence, reason = learned, "words unsure, sound finished"
    else:
        silence, reason = doubt, "words unsure, sound unfinished or unknown"
    return Decision(
        silence_ms=silence,
        reason=reason,
        words=state,
        words_reason=None if words is None else words.reason,
        audio_p=audio_p,
        learned_ms=learned_ms,
    )
