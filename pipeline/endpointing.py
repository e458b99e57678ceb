"""Sans-I/O turn detection made for older speakers: feed (is_speech, time) per frame, get turn events.

A turn starts when N of the last M frames are voiced (one click is not speech). When the caller falls
silent the endpointer says so early (`PauseBegan`, the moment to start a speculative decode and
reply) and ends the turn only after the *required silence*, which adapts to the speaker::

    required = clamp(max(base, k * p90(their pauses)), min_silence_ms, max_silence_ms)

`base` is the session's `silence_duration_ms`; the pauses are the silences inside their turns (and a
turn that we ended too early, when they carried on within `max_silence_ms`, counts as such a pause).
The endpointer learns all of this itself; its owner only tells it what it cannot hear: how much of
our answer the caller heard before carrying on (`heard`: then it was an answer, not a pause), and,
with `words_decide`, whether the words of the turn we ended looked finished (`last_turn_words`).
A client that commits the buffer itself ends the turn with `end_turn_now`.
So a slow speaker who pauses 600 ms mid-sentence soon gets about a second before the turn ends,
while a brisk speaker keeps the floor. While the owner sets `early_pause_ms` (the decoder has
nothing else to do, so a speculative decode costs nobody anything), the pause is announced after
that much silence instead of `pause_trigger_ms`: the final transcript is ready sooner. While
`end_silence_ms` is set (the owner decides it from the words and the sound, `pipeline.turn_end`)
it replaces the learned silence.
Times are input-audio milliseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class TurnStarted:
    #: Where the turn's audio begins, prefix padding included.
    start_ms: int
    #: The first voiced frame.
    voiced_ms: int
    #: Silence since the previous turn ended, if there was one.
    gap_ms: int | None = None


@dataclass(frozen=True, slots=True)
class PauseBegan:
    """The caller has been silent for `pause_trigger_ms`: speculate now, the turn may be over."""

    #: End of the last voiced frame.
    speech_end_ms: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """The caller spoke again after a `PauseBegan`: discard anything speculated."""

    pause_ms: int


@dataclass(frozen=True, slots=True)
class TurnEnded:
    #: End of the last voiced frame.
    speech_end_ms: int
    #: The silence that was required (for timings: the endpointing wait); 0 when ended on request.
    silence_ms: int
    #: Voiced milliseconds in the turn (a cough is short: barge-in tells noise from words by it).
    voiced_ms: int = 0


EndpointEvent = TurnStarted | PauseBegan | SpeechResumed | TurnEnded


class Endpointer:
    """Turn detector over 20 ms frames. Call `feed` for every frame, in order."""

    def __init__(
        self,
        *,
        silence_ms: int = 500,
        prefix_padding_ms: int = 300,
        min_silence_ms: int = 700,
        max_silence_ms: int = 2000,
        frame_ms: int = 20,
        start_frames: int = 3,
        start_window: int = 5,
        resume_frames: int = 2,
        pause_trigger_ms: int = 160,
        min_pause_ms: int = 200,
        pause_factor: float = 1.5,
        history: int = 30,
        barely_heard_ms: float = 500.0,
        words_decide: bool = False,
    ) -> None:
        self.silence_ms = silence_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.min_silence_ms = min_silence_ms
        self.max_silence_ms = max(max_silence_ms, min_silence_ms)
        self.frame_ms = frame_ms
        self.start_frames, self.start_window = start_frames, start_window
        self.resume_frames = resume_frames
        self.pause_trigger_ms = pause_trigger_ms
        #: Announce the pause after this much silence instead, while set (non-zero; the owner
        #: sets it from frame to frame).
        self.early_pause_ms = 0
        self.min_pause_ms = min_pause_ms
        self.pause_factor = pause_factor
        #: A quick restart after the caller heard this much of our answer is an answer, not a pause.
        self.barely_heard_ms = barely_heard_ms
        #: Learn a quick restart as a pause only once told the words before it were unfinished
        #: (`last_turn_words`); without it every quick restart that heard little of us counts.
        self.words_decide = words_decide
        self._heard_ms = 0.0  # of our answer, since the last turn ended
        self._last_finished: bool | None = None  # the last ended turn's words looked finished
        self._restart_gap: int | None = None  # a quick restart waiting for `last_turn_words`
        #: The silence that ends the turn in progress, when the owner has decided it from the
        #: words and the sound (`pipeline.turn_end`); None: the speaker's learned silence.
        self.end_silence_ms: int | None = None
        self.pauses: deque[int] = deque(maxlen=history)
        self._window: deque[tuple[bool, int]] = deque(maxlen=start_window)
        self.in_turn = False
        self._silent_since: int | None = None  # end of the last voiced frame, while silent in a turn
        self._silence = 0  # ms of it, as of the last frame
        self._pause_announced = False
        self._resume_run = 0
        self._resume_first = 0
        self._last_end: int | None = None  # speech end of the previous turn
        #: Voiced milliseconds in the current turn (for telling a cough from speech).
        self.voiced_ms = 0
        self.turn_start_ms = 0

    @property
    def silent_ms(self) -> int:
        """The silence so far in the turn in progress: 0 while the caller speaks, or out of a turn."""
        return self._silence if self.in_turn and self._silent_since is not None else 0

    def required_silence_ms(self) -> int:
        """The silence that ends a turn now, adapted to this speaker's pauses."""
        want = float(self.silence_ms)
        if self.pauses:
            # "higher": an actual pause of theirs, so with few samples it is their longest one.
            p90 = float(np.percentile(list(self.pauses), 90, method="higher"))
            want = max(want, self.pause_factor * p90)
        return int(min(max(want, self.min_silence_ms), self.max_silence_ms))

    def feed(self, is_speech: bool, t_ms: int) -> list[EndpointEvent]:
        """One frame starting at `t_ms`. Returns what happened, usually nothing."""
        end = t_ms + self.frame_ms
        if not self.in_turn:
            self._window.append((is_speech, t_ms))
            if sum(v for v, _ in self._window) < self.start_frames:
                return []
            first = next(t for v, t in self._window if v)
            voiced = sum(self.frame_ms for v, _ in self._window if v)
            self._window.clear()
            gap = None if self._last_end is None else first - self._last_end
            if gap is not None and gap <= self.max_silence_ms and self._heard_ms < self.barely_heard_ms:
                # We ended their previous turn but they carried on: that silence may have been a
                # pause of theirs, unless the words before it were a finished sentence.
                self._restart_gap = gap
                self._learn_restart()
            self.in_turn = True
            self._silent_since = None
            self._pause_announced = False
            self._resume_run = 0
            self.voiced_ms = voiced
            self.turn_start_ms = max(0, first - self.prefix_padding_ms)
            return [TurnStarted(start_ms=self.turn_start_ms, voiced_ms=first, gap_ms=gap)]

        if self._silent_since is None:
            if is_speech:
                self.voiced_ms += self.frame_ms
            else:
                self._silent_since = t_ms
                self._silence = end - t_ms
                self._resume_run = 0
            return []

        events: list[EndpointEvent] = []
        if is_speech:
            if self._resume_run == 0:
                self._resume_first = t_ms
            self._resume_run += 1
            if self._resume_run >= self.resume_frames:
                pause = self._resume_first - self._silent_since
                if pause >= self.min_pause_ms:
                    self.pauses.append(pause)
                if self._pause_announced:
                    events.append(SpeechResumed(pause_ms=pause))
                self._silent_since = None
                self._pause_announced = False
                self.voiced_ms += self.frame_ms * self._resume_run
            return events
        self._resume_run = 0
        silence = end - self._silent_since
        self._silence = silence
        trigger = min(self.early_pause_ms or self.pause_trigger_ms, self.pause_trigger_ms)
        if not self._pause_announced and silence >= trigger:
            self._pause_announced = True
            events.append(PauseBegan(speech_end_ms=self._silent_since))
        required = self.end_silence_ms if self.end_silence_ms is not None else self.required_silence_ms()
        if silence >= required:
            events.append(TurnEnded(self._silent_since, required, self.voiced_ms))
            self._last_end = self._silent_since
            self._close_turn()
        return events

    # --- what the owner tells it ---------------------------------------------------------------

    def heard(self, ms: float) -> None:
        """The caller has heard `ms` of our answer since their last turn ended (call as it plays)."""
        self._heard_ms = max(self._heard_ms, ms)

    def last_turn_words(self, *, finished: bool) -> None:
        """Whether the words of the turn that ended last looked finished (with `words_decide`)."""
        self._last_finished = finished
        self._learn_restart()

    def end_turn_now(self, t_ms: int) -> list[EndpointEvent]:
        """The client committed the buffer: end the turn in progress at `t_ms`, as if the silence
        had come. Returns the events (PauseBegan unless announced already, then TurnEnded), or none
        when no turn is in progress. Not a pause of theirs: nothing is learned from the restart."""
        if not self.in_turn:
            return []
        end = self._silent_since if self._silent_since is not None else t_ms
        events: list[EndpointEvent] = []
        if not self._pause_announced:
            events.append(PauseBegan(speech_end_ms=end))
        events.append(TurnEnded(end, 0, self.voiced_ms))
        self._close_turn()
        return events

    def reset(self) -> None:
        """Forget the turn in progress (the client cleared the buffer)."""
        self._close_turn()
        self._window.clear()
        self.voiced_ms = 0

    def _close_turn(self) -> None:
        self.in_turn = False
        self._silent_since = None
        self._pause_announced = False
        self._heard_ms, self._last_finished, self._restart_gap = 0.0, None, None

    def _learn_restart(self) -> None:
        gap = self._restart_gap
        if gap is None:
            return
        if not self.words_decide or self._last_finished is False:
            self.pauses.append(gap)
        if not self.words_decide or self._last_finished is not None:
            self._restart_gap = None
