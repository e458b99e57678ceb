"""The end-of-turn decision: how much silence ends this turn, from sound, words and the speaker.

At each pause the core gathers three signals and asks `decide` for the silence that must pass
before the turn is over (it asks again whenever a signal arrives or changes):

1. the words: `pipeline.completeness.judge` on the transcript so far (None while decoding), and
   how sure the decoder was of their ending (`Transcript.end_prob`): at a pause right after a
   function word Whisper often hears another word ("remind me to" as "remind me too?", "we used
   to" as "We use two."), the rules then read a finished sentence, and the sound of a pause after
   a whole word can read finished too; but the decoder often gave that ending a low probability
   (0.24-0.53 on most such Piper fragments, whole sentences mostly 0.75-0.92: README, Performance);
   and the other words it weighed for the last one (`Transcript.end_alternatives`): it may be
   fairly sure of "Yesterday I went to them." (0.64) yet have given "... went to the" 0.22, a
   reading the rules call unfinished;
2. the sound: the audio end-of-turn model's probability that the speaker has finished (Smart Turn;
   None until it has answered, or when no model is configured);
3. the speaker: the silence their own pauses call for (`Endpointer.required_silence_ms`), and
   their *patience*: once this caller went on after a pause in a turn whose words (and sound) read
   finished (the turn was rejoined), they pause mid-thought after whole phrases ("I saw an old
   photo ... of my wedding day"), and no rule on words or sound can tell; from then on no turn of
   theirs that is not plainly unfinished ends before `went_on_factor` x the longest such pause,
   nor before `doubt_ms` once that pause was `MID_THOUGHT_MS` or longer (one pause seen says
   little of the next), and at most `max_ms`. A pause inside a later turn that only the patience
   bridged (the table alone would have ended the turn in it) is the same evidence and keeps it;
   after `PATIENCE_FORGET_TURNS` turns in a row that waited on the patience and were spoken
   without a pause of `finished_ms` or more inside them, the oldest such pause is forgotten, so a
   caller who paused so once gets quick answers again. A turn with such a pause (bridged by
   anything: the words read unfinished, a doubted ending) shows the caller still pauses
   mid-thought, and a turn of theirs that paused after a whole phrase would have ended in it
   without the patience. Within a turn the same holds from its first pause mid-thought (one of
   `MID_THOUGHT_MS` or longer that the caller went on from, whatever bridged it): the rest of that
   turn waits the patience such a pause teaches ("We used to | grow tomatoes and peppers | in the
   garden": after the 1.8 s pause, the 600 ms one after a whole phrase is not the end). Where
   the words at that pause stop inside a phrase, on a function word or a Korean particle
   (`Verdict.inside_phrase`: "My late husband and I used to | walk ..."), it teaches the call a
   patience of the doubt wait, whatever its length: a caller who stops mid-phrase will again, and
   at such a pause Whisper sometimes writes a confident whole sentence ("Yesterday I went to the
   | market" as "Yesterday I went to them.", its ending at 0.58-0.76) that neither the words nor
   the sound can doubt. A pause at a clause's boundary ("When you hear the bell, | come quickly",
   a Korean connective ending) or a comma's breath after a whole clause teaches only its own turn.
   And when all a caller adds after a pause is a question tag ("The weather is lovely today, |
   isn't it?", "..., | 그렇죠?"), the sentence was finished and the tag hands us the turn: that
   pause teaches nothing (`EndOfTurn.words_after_going_on`).

The table, older speakers first (being answered mid-sentence is the worst thing a companion can do;
waiting too long after a finished sentence is the second worst)::

    words        sound              silence
    unfinished   any                max_ms       ("My late husband and I used to.")
    no words     any                max_ms       (still decoding: decided again when they come)
    finished, but the decoder unsure of the last word, or it nearly heard an unfinished one
                 any                max(learned, doubt_ms)
    finished     finished           finished_ms  (both agree: answer quickly)
    finished     being judged       max(learned, doubt_ms)  (asked once the words are in; it
                                                 answers in ~100 ms, and the table is read again)
    finished     no model / failed  learned
    finished     unfinished         max(learned, doubt_ms)
    unsure       finished           learned
    unsure       unfinished / none  max(learned, doubt_ms)

and every row but the first two waits at least the patience (0 until the caller went on after a
finished-looking pause or stopped mid-phrase, or paused mid-thought earlier in this turn).

Each `Decision` carries its inputs and a reason, so the core can log it and store it with the
turn's timings: a wrong decision can be understood afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline import EngineError
from pipeline.completeness import Completeness, Verdict, added_tag, judge
from pipeline.engines.base import PCM, EndOfTurnModel, Transcript

log = logging.getLogger(__name__)

#: How many of a caller's went-on pauses are remembered (the longest of them sets the patience).
WENT_ON_HISTORY = 8
#: Turns in a row that waited on the patience with no pause inside them, before the oldest went-on
#: pause is forgotten.
PATIENCE_FORGET_TURNS = 4
#: A went-on pause this long or longer is a pause mid-thought, not the breath of a comma ("The
#: weather is lovely today, | isn't it?" went on after 420-480 ms): from such a pause on, the
#: patience is at least the doubt wait.
MID_THOUGHT_MS = 500
#: A remembered pause longer than this is not a pause (a stored value out of range is dropped).
HABIT_MAX_MS = 10_000


@dataclass(frozen=True, slots=True)
class SpeakerHabits:
    """How a caller pauses, as one call learned it, to start their next call with.

    `pauses_ms`: their pauses inside turns (and quick restarts after a turn we ended), which set the
    learned silence (`Endpointer.pauses`); `went_on_ms`: the pauses after which they went on
    although the words read finished, or where they stopped mid-phrase, which set their patience
    (`EndOfTurn.went_on_after`). Both
    keep learning, and forgetting, in the next call as in this one.
    """

    pauses_ms: tuple[int, ...] = ()
    went_on_ms: tuple[int, ...] = ()

    def as_json(self) -> dict[str, list[int]]:
        return {"pauses_ms": list(self.pauses_ms), "went_on_ms": list(self.went_on_ms)}

    @classmethod
    def from_json(cls, data: Any) -> SpeakerHabits:
        """Read what `as_json` wrote; anything else (an old row, a hand edit) counts as unknown."""

        def pauses(key: str) -> tuple[int, ...]:
            values = data.get(key) if isinstance(data, Mapping) else None
            if not isinstance(values, list):
                return ()
            return tuple(
                v for v in values if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= HABIT_MAX_MS
            )

        return cls(pauses("pauses_ms"), pauses("went_on_ms"))


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
    #: Patience: a caller who went on after a finished-looking pause of P ms gets this x P (at
    #: least `doubt_ms` when P is a pause mid-thought, `MID_THOUGHT_MS` or longer).
    went_on_factor: float = 1.5
    #: The decoder's probability of the transcript's ending below which finished-looking words are
    #: doubted (0: never; calibrated per language by the caller of this module).
    end_word_p: float = 0.0
    #: The probability from which another word the decoder weighed for the last one doubts
    #: finished-looking words when the text would read unfinished with it (None: never).
    end_alt_p: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    #: The silence (ms after the last voiced frame) that ends the turn.
    silence_ms: int
    reason: str
    words: Completeness | None
    words_reason: str | None
    audio_p: float | None
    learned_ms: int
    patience_ms: int = 0
    #: The silence the table alone gives, before the caller's patience is applied.
    table_ms: int = 0
    #: The decoder's probability of how the words end (`Transcript.end_prob`), when known.
    end_p: float | None = None
    #: An unfinished reading the decoder weighed at `end_alt_p` or more, with its probability.
    heard_unfinished: tuple[str, float] | None = None

    @property
    def by_patience(self) -> bool:
        """The caller's patience, not the table, set this wait."""
        return self.silence_ms > self.table_ms

    def as_timings(self) -> dict[str, float | str]:
        """The decision in the shape stored with a turn's timings (numbers and short strings)."""
        out: dict[str, float | str] = {
            "end_silence_ms": float(self.silence_ms),
            "end_reason": self.reason,
            "end_learned_ms": float(self.learned_ms),
        }
        if self.patience_ms:
            out["end_patience_ms"] = float(self.patience_ms)
        if self.words is not None:
            out["end_words"] = self.words.value
        if self.audio_p is not None:
            out["end_audio_p"] = round(self.audio_p, 3)
        if self.end_p is not None:
            out["end_word_p"] = round(self.end_p, 3)
        if self.heard_unfinished is not None:
            out["end_heard_unfinished_p"] = round(self.heard_unfinished[1], 3)
        return out


def decide(
    words: Verdict | None,
    audio_p: float | None,
    learned_ms: int,
    policy: TurnEndPolicy,
    patience_ms: int = 0,
    *,
    sound_pending: bool = False,
    end_p: float | None = None,
    heard_unfinished: tuple[str, float] | None = None,
) -> Decision:
    """The silence that ends the turn now, given what is known (see the module's table).
    `sound_pending`: the audio model was asked about this pause and has not answered yet; `end_p`:
    the decoder's probability of how the words end (None: not known); `heard_unfinished`: an
    unfinished reading of the last word the decoder weighed (`unfinished_reading`)."""
    learned = min(max(learned_ms, policy.finished_ms), policy.max_ms)
    doubt = min(max(learned, policy.doubt_ms), policy.max_ms)
    sound_done = None if audio_p is None else audio_p >= policy.audio_threshold
    state = None if words is None else words.state

    if state is None:
        silence, reason = policy.max_ms, "no transcript yet"
    elif state is Completeness.INCOMPLETE:
        silence, reason = policy.max_ms, "words unfinished"
    elif state is Completeness.COMPLETE:
        if doubted_ending(end_p, policy):
            silence, reason = doubt, f"words finished, but their last word uncertain (p={end_p:.2f})"
        elif heard_unfinished is not None:
            text, p = heard_unfinished
            silence, reason = (
                doubt,
                f"words finished, but the decoder nearly heard {text[-40:]!r} (p={p:.2f})",
            )
        elif sound_done is None and sound_pending:
            silence, reason = doubt, "words finished, sound being judged"
        elif sound_done is None:
            silence, reason = learned, "words finished, sound not judged"
        elif sound_done:
            silence, reason = policy.finished_ms, "words and sound finished"
        else:
            silence, reason = doubt, "words finished, sound unfinished"
    elif sound_done:
        silence, reason = learned, "words unsure, sound finished"
    else:
        silence, reason = doubt, "words unsure, sound unfinished or unknown"
    table, patience = silence, min(patience_ms, policy.max_ms)
    if state not in (None, Completeness.INCOMPLETE) and patience > silence:
        silence, reason = patience, f"{reason}; this caller went on after such pauses"
    return Decision(
        silence_ms=silence,
        reason=reason,
        words=state,
        words_reason=None if words is None else words.reason,
        audio_p=audio_p,
        learned_ms=learned_ms,
        patience_ms=patience,
        table_ms=table,
        end_p=end_p,
        heard_unfinished=heard_unfinished,
    )


def doubted_ending(end_p: float | None, policy: TurnEndPolicy) -> bool:
    """True when the decoder was too unsure of the words' ending for them to say "finished"."""
    return end_p is not None and end_p < policy.end_word_p


def unfinished_reading(
    alternatives: Sequence[tuple[str, float]], language: str, policy: TurnEndPolicy
) -> tuple[str, float] | None:
    """The likeliest of the decoder's other readings (`Transcript.end_alternatives`) given
    `policy.end_alt_p` or more that the rules call unfinished ("Yesterday I went to the"), if any."""
    if policy.end_alt_p is None:
        return None
    for text, p in sorted(alternatives, key=lambda a: -a[1]):
        if p >= policy.end_alt_p and judge(text, language).state is Completeness.INCOMPLETE:
            return text, p
    return None


class EndOfTurn:
    """One call's end-of-turn signals for the turn in progress, and the silence they decide.

    The conversation calls `begin` when a turn starts; `paused` when the endpointer announces a
    pause (the audio model judges the sound of that moment, off the loop, once the words are in
    and are not plainly unfinished, and once more if the pause grows past `rerun_after_s`);
    `resumed` when the caller speaks on; `silence_ms` on every frame of the turn (cheap: words are
    judged once per transcript, the table is recomputed only when an input changes); and
    `went_on` when a turn that had ended in a pause was carried on (rejoined). `decision` is the
    last one made, for the log and the turn's stored timings.
    """

    def __init__(
        self,
        model: EndOfTurnModel | None,
        policy: TurnEndPolicy,
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
        clock: Callable[[], float],
        *,
        rerun_after_s: float = 0.8,
    ) -> None:
        self.model, self.policy, self._spawn, self._clock = model, policy, spawn, clock
        self.rerun_after_s = rerun_after_s
        self.decision: Decision | None = None
        self._words: tuple[str, Verdict] | None = None  # (text judged, its verdict)
        # (the decoder's other readings, the unfinished one among them): judged once per transcript
        self._heard: tuple[tuple[tuple[str, float], ...], tuple[str, float] | None] = ((), None)
        self._audio_p: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._paused_at: float | None = None
        self._reruns = 0
        self._audio: Callable[[], PCM] | None = None
        #: The sound as the pause began, until the model is asked about it.
        self._sound: PCM | None = None
        self._key: tuple[Any, ...] | None = None
        #: Pauses (ms) after which this caller went on although the turn had ended as finished, or
        #: that only the patience bridged, or where they stopped mid-phrase: they set the patience.
        self.went_on_after: deque[int] = deque(maxlen=WENT_ON_HISTORY)
        self._unneeded = 0  # turns in a row that waited on the patience without needing it
        self._paused_inside = False  # this turn lived through a pause that could have ended it
        #: The longest pause mid-thought (`MID_THOUGHT_MS` or more) this turn went on from, 0: none.
        self._mid_thought_ms = 0
        #: (a went-on pause just learned, the words before it), until the words after it are known.
        self._unless_tag: tuple[int, str] | None = None

    @property
    def patience_ms(self) -> int:
        """The least silence that ends this turn, if it is not plainly unfinished: what this
        caller's went-on pauses taught, or this turn's own pause mid-thought, whichever is longer."""
        longest = max([self._mid_thought_ms, *self.went_on_after])
        if not longest:
            return 0
        # One pause seen says little of the next (the benchmark's caller went on after 580 ms, then
        # paused 900 ms after a whole clause): a caller who pauses mid-thought makes each of their
        # finished-looking pauses doubtful, so they wait at least what a doubt waits. A comma's
        # breath is not such a pause: it alone would make the next turns wait 1.6 s for nothing.
        patience = self.policy.went_on_factor * longest
        if longest >= MID_THOUGHT_MS:
            patience = max(patience, self.policy.doubt_ms)
        return min(int(patience), self.policy.max_ms)

    def went_on(self, pause_ms: int, ended: Mapping[str, float | str], before: str = "") -> None:
        """The caller carried on `pause_ms` after a turn we had ended (`ended`: that turn's stored
        decision, `Decision.as_timings`; `before`: its words), and the two became one turn.

        Learned only when that turn ended on words that were not unfinished: the rules could not
        have known, so from now on this caller gets more time (unless what they added turns out
        to be only a question tag: `words_after_going_on`).
        """
        words, silence = ended.get("end_words"), ended.get("end_silence_ms")
        if words in (None, Completeness.INCOMPLETE.value) or not isinstance(silence, float):
            return
        if pause_ms >= silence:  # else they started within the silence we required: not cut
            self._learn(pause_ms, f"a pause that ended a turn ({pause_ms} ms)")
            self._unless_tag = (pause_ms, before)

    def words_after_going_on(self, text: str) -> None:
        """The words of the turn the caller went on in (`went_on`), once decoded. When all they
        added after the pause is a question tag ("The weather is lovely today, | isn't it?",
        "..., | 그렇죠?"), the sentence before it was finished and the tag hands the turn over: a
        breath before it is no pause mid-thought, and teaches nothing (the benchmark's caller took
        420-600 ms there, and from 500 ms it made their next four turns wait 1.6 s)."""
        pending, self._unless_tag = self._unless_tag, None
        if pending is None:
            return
        pause_ms, before = pending
        added = added_tag(before, text)
        if added is None or pause_ms not in self.went_on_after:
            return
        kept = list(self.went_on_after)
        del self.went_on_after[len(kept) - 1 - kept[::-1].index(pause_ms)]
        log.info(
            "the caller went on with only %r after %d ms: a finished sentence; patience %d ms",
            added,
            pause_ms,
            self.patience_ms,
        )

    def ended(self, decision: Decision) -> None:
        """A turn ended on `decision`: one that waited on the patience and was spoken without a
        pause inside it counts towards forgetting it; one with such a pause starts the count again."""
        if self._paused_inside:  # reset by the next `begin`
            self._unneeded = 0
            return
        if not decision.by_patience:
            return
        self._unneeded += 1
        if self._unneeded >= PATIENCE_FORGET_TURNS and self.went_on_after:
            self.went_on_after.popleft()
            self._unneeded = 0
            log.info("patience not needed for %d turns: now %d ms", PATIENCE_FORGET_TURNS, self.patience_ms)

    def _learn(self, pause_ms: int, what: str) -> None:
        self.went_on_after.append(pause_ms)
        self._unneeded = 0
        log.info("the caller went on after %s: patience %d ms", what, self.patience_ms)

    def begin(self) -> None:
        """A new turn: forget the last one's signals."""
        self.resumed()
        self._words, self.decision, self._key = None, None, None
        self._heard = ((), None)
        self._paused_inside, self._mid_thought_ms = False, 0

    @property
    def pausing(self) -> bool:
        """Told of a pause (`paused`) that has not ended (`resumed`, `begin`)."""
        return self._paused_at is not None

    def paused(self, audio: Callable[[], PCM]) -> None:
        """The caller fell silent (`audio()`: the turn so far, 16 kHz, ending now). The sound as
        the pause began is kept; the model judges it once the words are in and are not plainly
        unfinished (a wait for unfinished words is the longest whatever the sound), so it never
        competes with the final decode for the CPU, nor runs when its answer cannot matter."""
        self._paused_at, self._reruns = self._clock(), 0
        if self.model is not None:  # with no model there is nothing to judge: copy no audio
            self._audio, self._sound = audio, audio()

    def resumed(self, pause_ms: int | None = None) -> None:
        """The caller spoke on after `pause_ms` of silence: the pause's sound judgement is stale.
        A pause that only the patience bridged is evidence for it (see the module docstring)."""
        d = self.decision
        if pause_ms is not None and d is not None and self.pausing:
            # Every pause the turn lived through (told of at `paused`, not each gap between words),
            # with the wait that bridged it: what kept a turn open is as worth understanding as what
            # ended one.
            log.info("a pause of %d ms inside the turn (wait %d ms: %s)", pause_ms, d.silence_ms, d.reason)
        if pause_ms is not None and d is not None and d.by_patience and d.table_ms <= pause_ms:
            self._learn(pause_ms, f"a pause inside a turn ({pause_ms} ms)")
        if pause_ms is not None and pause_ms >= self.policy.finished_ms:
            self._paused_inside = True
        if pause_ms is not None and pause_ms >= MID_THOUGHT_MS and self.pausing:
            self._mid_thought_ms = max(self._mid_thought_ms, pause_ms)
            words = self._words[1] if self._words is not None else None
            if (
                words is not None
                and words.inside_phrase
                and max(self.went_on_after, default=0) < MID_THOUGHT_MS
            ):
                # They stopped mid-phrase ("My late husband and I used to | walk"): a caller who does
                # will again, and Whisper may then write a confident whole sentence ("Yesterday I went
                # to the | market" as "... went to them.") that no rule can doubt. Remembered as the
                # shortest pause mid-thought: it teaches that they pause so (the doubt wait), not for
                # how long, and once is enough (while they keep pausing the patience is kept). A
                # pause at a clause's boundary ("When you hear the bell, | come quickly"), like a
                # comma's breath after a whole clause, teaches only its own turn.
                self._learn(MID_THOUGHT_MS, f"stopping mid-phrase ({pause_ms} ms)")
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task, self._audio_p, self._paused_at, self._audio = None, None, None, None
        self._sound = None

    def silence_ms(self, transcript: Transcript | None, language: str, learned_ms: int) -> int:
        """The silence that ends the turn now. `transcript`: the turn's words so far (with how sure
        the decoder was of their ending and the other words it weighed for the last one), None
        while still decoding."""
        text = None if transcript is None else transcript.text.strip()
        if text is not None and (self._words is None or self._words[0] != text):
            self._words = (text, judge(text, language))
        words = self._words[1] if text is not None and self._words is not None else None
        end_p = None if transcript is None else transcript.end_prob
        alternatives = () if transcript is None else transcript.end_alternatives
        if self._heard[0] != alternatives:
            self._heard = (alternatives, unfinished_reading(alternatives, language, self.policy))
        heard = self._heard[1]
        paused_at = self._paused_at
        # The sound cannot change the wait for unfinished words, nor for finished ones whose
        # ending the decoder doubted: the model is not run for them.
        sound_matters = (
            paused_at is not None
            and words is not None
            and words.state is not Completeness.INCOMPLETE
            and not (
                words.state is Completeness.COMPLETE
                and (doubted_ending(end_p, self.policy) or heard is not None)
            )
        )
        if sound_matters and self._sound is not None and self._task is None:
            self._predict(self._sound)
            self._sound = None
        patience = self.patience_ms
        pending = self._task is not None and not self._task.done()
        key = (words, self._audio_p, learned_ms, patience, pending, end_p, heard)
        if key != self._key or self.decision is None:
            self._key = key
            self.decision = decide(
                words,
                self._audio_p,
                learned_ms,
                self.policy,
                patience,
                sound_pending=pending,
                end_p=end_p,
                heard_unfinished=heard,
            )
        if (
            paused_at is not None
            and sound_matters
            and self._sound is None
            and self._reruns == 0
            and self._task is None
            and self._audio is not None
            and self.decision.silence_ms > self.policy.finished_ms
            and self._clock() - paused_at >= self.rerun_after_s
        ):
            # A longer pause sounds different: ask the model once more before waiting it out.
            self._reruns += 1
            self._predict(self._audio())
        return self.decision.silence_ms

    def _predict(self, audio: PCM) -> None:
        if self.model is None or len(audio) == 0:
            return
        model = self.model

        async def run() -> None:
            try:
                self._audio_p = await model.probability(audio)
            except EngineError:
                log.warning("end-of-turn model failed; deciding from words and pauses", exc_info=True)
            finally:
                if self._task is asyncio.current_task():
                    self._task = None

        self._task = self._spawn(run())
