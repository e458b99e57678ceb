"""Barge-in: the caller starts speaking while our reply plays. Everything about it is here.

The reply is *held* the moment their turn starts (not one more byte goes out), and then the
evidence decides, whichever comes first::

    turn starts over a LIVE reply ------------------------------> HELD (reply silent)
    HELD,  voiced >= confirm_voiced_ms            -> cancel the reply ("turn_detected"): over
    HELD,  silent cough_pause_ms after voiced < cough_ms
                                                  -> RESUMED: a cough or a knock, the reply plays on
    RESUMED, they speak again in the same turn    -> HELD again
    HELD,  silent for false_interruption_s        -> resume the reply: over
    turn ends, voiced < cough_ms                  -> noise: resume, drop the turn: over
    turn ends, longer                             -> the transcript settles it: words beyond what
                                                     the turn rejoined cancel the reply (the turn
                                                     is committed), no new words resume it

A resumed reply goes on from where the caller stopped hearing it (`Reply.hold` froze that point).
`Floor` owns the one `BargeIn` of a call and calls these methods from its turn events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pipeline.reply import Reply
from pipeline.turns import CallConfig, Item


class Phase(enum.Enum):
    #: The caller speaks over the reply: it is silent until we know whether they mean it.
    HELD = "held"
    #: They paused before saying anything real (a cough): the reply plays on; speaking again holds it.
    RESUMED = "resumed"


class Verdict(enum.Enum):
    """What the turn that ended over a reply was, and so what became of the reply."""

    NOISE = "noise"  # the reply resumed; drop the turn
    UNDECIDED = "undecided"  # the transcript decides (`settle`)
    WORDS = "words"  # a real turn (the reply was cancelled or is no longer live); commit it


@dataclass(slots=True)
class BargeIn:
    """One possible interruption of `reply` by the caller's turn `item`."""

    reply: Reply
    item: Item
    #: When the reply was (last) held, on the call's clock.
    since: float
    phase: Phase = Phase.HELD

    @classmethod
    def begin(cls, reply: Reply, item: Item, now: float) -> BargeIn:
        """The caller's turn started over `reply`: silence it within this frame."""
        reply.hold()
        return cls(reply, item, now)

    @property
    def holding(self) -> bool:
        return self.phase is Phase.HELD

    def frame(self, *, in_turn: bool, voiced_ms: int, silent_ms: int, now: float, config: CallConfig) -> bool:
        """Weigh one frame of evidence (`silent_ms`: the silence so far in their turn). True when
        the barge-in is over (the reply cut or resumed)."""
        if self.phase is not Phase.HELD:
            return False
        if in_turn and voiced_ms >= config.confirm_voiced_ms:
            self.reply.cancel("turn_detected")  # they are really talking
            return True
        if in_turn and voiced_ms < config.cough_ms and silent_ms >= config.cough_pause_ms:
            # Less than `cough_ms` of sound, then quiet: a cough or a knock; the reply goes on.
            # A gap after a short first word is shorter (a pause of 160-180 ms resumed the reply
            # into "And so, | my fellow Americans" for 200 ms).
            self.phase = Phase.RESUMED
            self._resume()
            return False
        if not in_turn and now - self.since > config.false_interruption_s:
            self._resume()  # nothing came of it
            return True
        return False

    def spoke_again(self, now: float) -> bool:
        """They speak again after a pause. False when there is nothing left to hold (reply ended)."""
        if self.phase is Phase.RESUMED:
            if not self.reply.active:
                return False
            self.reply.hold()
            self.phase, self.since = Phase.HELD, now
        return True

    def turn_ended(self, voiced_ms: int, config: CallConfig) -> Verdict:
        """Their turn ended: too short to be words is noise (the reply resumes), else undecided."""
        if voiced_ms < config.cough_ms:
            self._resume()
            return Verdict.NOISE
        return Verdict.UNDECIDED if self.phase is Phase.HELD else Verdict.WORDS

    def settle(self, text: str, rejoined: str, *, current: bool) -> Verdict:
        """The transcript is in: no words beyond those of the turn it rejoined is noise.

        `current` is False once the barge-in was already over (resumed after false_interruption_s):
        then only the verdict is given and the reply is left as it is.
        """
        if len(text.split()) <= len(rejoined.split()):
            if current:
                self._resume()
            return Verdict.NOISE
        if current:
            self.reply.cancel("turn_detected")
        return Verdict.WORDS

    def _resume(self) -> None:
        if self.reply.active:
            self.reply.resume()
