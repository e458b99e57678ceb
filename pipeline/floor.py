"""Turn-taking: who has the floor, and what the endpointer's events do to the caller's turn and our reply.

The caller's side is one `Phase`::

    IDLE --TurnStarted--> SPEAKING --PauseBegan--> PAUSING --TurnEnded--> IDLE (turn committed)
                              ^                       |
                              +----SpeechResumed------+  (speculation discarded)

- SPEAKING: the turn's audio goes to the transcriber; partials may go out.
- PAUSING: the final decode runs (speculation) and, with `create_response`, a SPECULATIVE reply on
  that transcript: LLM and first TTS run while the endpointer still waits, their events buffered.
- TurnEnded: the turn is committed and the speculative reply released (or a reply started now).

Our side is the live `reply` (see `pipeline.reply.State`); a turn that starts over it is a
barge-in (`pipeline.bargein`). A turn that starts while our answer to the last is barely heard
*rejoins* it (`turns.rejoins`): one transcript over both turns' audio, and the earlier user item is
deleted on commit (`ItemDeleted`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence

from pipeline import emergency, turns
from pipeline.bargein import BargeIn, Verdict
from pipeline.core import CallCore
from pipeline.endpointing import Endpointer, TurnEnded, TurnStarted
from pipeline.engines.base import Message
from pipeline.events import InputCommitted, ItemCreated, ItemDeleted, SpeechStarted, SpeechStopped
from pipeline.reply import Reply, ReplyPlan, State
from pipeline.tools import ClientTools
from pipeline.transcripts import Transcripts
from pipeline.turns import Item, new_id

log = logging.getLogger(__name__)

#: A rejoined turn is decoded whole: past this much audio, the next turn starts afresh instead.
REJOIN_MAX_S = 30.0


class Phase(enum.Enum):
    """The caller's side of the floor."""

    IDLE = "idle"  # no turn of theirs in progress
    SPEAKING = "speaking"  # in a turn, voiced
    PAUSING = "pausing"  # in a turn, silent long enough to speculate that it is over


class Floor:
    """The turn-taking state of one call and its transitions. Driven by `Conversation`."""

    def __init__(self, core: CallCore, endpointer: Endpointer, transcripts: Transcripts) -> None:
        self.core, self.ep, self.transcripts = core, endpointer, transcripts
        self.phase = Phase.IDLE
        #: The caller's turn while SPEAKING or PAUSING.
        self.turn: Item | None = None
        #: Our speculative answer to `turn` (made in a pause; released when the turn is committed).
        self.spec: Reply | None = None
        #: Our released reply, while it is not ended.
        self.reply: Reply | None = None
        #: Every released reply by its assistant item id (truncation, what was heard).
        self.replies: dict[str, Reply] = {}
        #: The last committed audio turn while its audio is still in the transcriber (to rejoin).
        self.open: Item | None = None
        #: A turn of the caller's over our live reply, while it is being judged.
        self.barge: BargeIn | None = None
        self._stamps: dict[str, float] = {}
        #: When the caller's speech last had a voiced frame (the turn's speech_end stamp).
        self.last_voiced = core.clock()
        #: Called with a committed turn that carried on an earlier one (the two became one).
        self.on_rejoined: Callable[[Item], None] | None = None

    @property
    def replying(self) -> bool:
        """A reply of ours is live (thinking, playing or held)."""
        return self.reply is not None and self.reply.active

    def heard_ms(self) -> float:
        """How much of our latest answer the caller has heard."""
        items = self.core.items
        n = len(items) - 1
        while n > 0 and items[n].call is not None:  # a reply's function calls follow its words
            n -= 1
        last = self.replies.get(items[n].id) if items else None
        if last is not None:
            return last.played_ms()
        return self.reply.played_ms() if self.reply is not None else 0.0

    # --- the endpointer's events ---------------------------------------------------------------

    def turn_started(self, event: TurnStarted) -> None:
        core, config = self.core, self.core.config
        core.last_activity = core.last_caller_activity = core.clock()
        item = Item(new_id("item"), "user", "audio", status="in_progress")
        self.phase, self.turn = Phase.SPEAKING, item
        self.transcripts.begin_turn(item)
        rejoin = turns.rejoins(self.open, self.reply, event.gap_ms, config, core.clock())
        if rejoin and core.stt.duration_s < REJOIN_MAX_S:
            item.continues, item.pause_before_ms = self.open, event.gap_ms
            core.stt.carry_on()
        else:
            core.stt.reset()
        self.open = None
        core.emit(SpeechStarted(item.id, event.start_ms))
        if self.replying and config.interrupt_response and self.barge is None:
            assert self.reply is not None
            self.barge = BargeIn.begin(self.reply, item, core.clock())

    def pause_began(self, now: float) -> None:
        self.phase = Phase.PAUSING
        self._stamps = {"speech_end": self.last_voiced}
        if not self.core.config.speculative or self.turn is None:
            return
        self.transcripts.speculate(self.turn)
        if self.core.config.create_response and self.spec is None:
            self.spec = self.start_reply(self.turn, speculative=True)

    def speech_resumed(self) -> None:
        self.phase = Phase.SPEAKING
        barge = self.barge
        if barge is not None and barge.item is self.turn and not barge.spoke_again(self.core.clock()):
            self.barge = None
        self.core.stt.cancel_speculation()
        if self.spec is not None:
            self.spec.discard()
            self.spec = None
        if self.turn is not None:
            self.turn.forget_transcript()

    def turn_ended(self, event: TurnEnded, now: float, *, respond: bool | None = None) -> None:
        """The turn is over: drop it as noise, judge it (barge-in), or commit it (and answer it,
        unless `respond` says otherwise; None: as `create_response` says)."""
        item, self.turn, self.phase = self.turn, None, Phase.IDLE
        self.transcripts.begin_turn(None)
        if item is None:
            return
        self.core.emit(SpeechStopped(item.id, event.speech_end_ms))
        self._stamps.setdefault("speech_end", self.last_voiced)
        self._stamps["turn_end"] = now
        item.timings.update(self._stamps)
        barge = self.barge if self.barge is not None and self.barge.item is item else None
        config = self.core.config
        if barge is not None:
            verdict = barge.turn_ended(event.voiced_ms, config)
            if verdict is Verdict.UNDECIDED:
                # Words or noise? The transcript decides; the reply stays on hold until it does.
                self.transcripts.pin(item)
                self.core.spawn(self._settle_barge(barge, item, respond))
                return
            self.barge = None
            if verdict is Verdict.NOISE:
                self.drop_turn(item)
                return
        elif self.replying and event.voiced_ms < config.cough_ms:
            self.drop_turn(item)  # a cough or a knock during the reply, not words: carry on speaking
            return
        self.commit_turn(item, respond=respond)

    async def _settle_barge(self, barge: BargeIn, item: Item, respond: bool | None) -> None:
        """A barge-in turn of middling length ended: words cancel the reply, no words resume it."""
        text, _ = await self.transcripts.text_of(item)
        rejoined = item.continues.text if item.continues is not None else ""
        current = self.barge is barge
        if current:
            self.barge = None
        if barge.settle(text, rejoined, current=current) is Verdict.NOISE:
            self.drop_turn(item)
            return
        self.commit_turn(item, respond=respond)

    # --- turns ---------------------------------------------------------------------------------

    def commit_turn(self, item: Item, *, respond: bool | None = None) -> None:
        """The turn becomes a user item; its transcript and (with `create_response`) a reply follow."""
        core = self.core
        joined = item.continues
        if joined is not None and joined in core.items:
            # One utterance after all: this turn's transcript covers the earlier one's words.
            core.items.remove(joined)
            core.emit(ItemDeleted(joined.id))
            if self.on_rejoined is not None:
                self.on_rejoined(item)
        previous = core.previous_id()
        item.status = "completed"
        core.items.append(item)
        core.emit(InputCommitted(item.id, previous))
        core.emit(ItemCreated(item.id, previous, "user", "input_audio"))
        item.committed = True
        self.open = item
        self.transcripts.announce(item)
        spec = self.spec if self.spec is not None and self.spec.user_item_id == item.id else None
        if spec is not None:
            self.spec = None
        self.transcripts.settle(item)  # announced once, even if the reply is cancelled early
        if spec is not None and spec.state is State.SPECULATIVE:
            spec.stamps.update(item.timings)
            self.make_live(spec)
            spec.release()
            return
        if spec is not None:
            spec.discard()
        if core.config.create_response if respond is None else respond:
            reply = self.start_reply(item, speculative=False)
            reply.stamps.update(item.timings)
            self.make_live(reply)

    def drop_turn(self, item: Item | None = None) -> None:
        """Forget a turn that was noise (or cleared): its decode and its speculative reply."""
        if self.turn is None or self.turn is item:
            self.core.stt.reset()
            self.open = None
        if self.spec is not None and (item is None or self.spec.user_item_id == item.id):
            self.spec.discard()
            self.spec = None

    def clear(self) -> None:
        """The client cleared the buffer: the turn in progress is gone."""
        if self.turn is not None:
            self.turn, self.phase = None, Phase.IDLE
            self.transcripts.begin_turn(None)
            self.drop_turn()

    # --- replies -------------------------------------------------------------------------------

    def start_reply(
        self,
        item: Item | None,
        *,
        speculative: bool,
        fixed_text: str | None = None,
        client_tools: ClientTools | None = None,
    ) -> Reply:
        """A reply to `item` (or to the conversation so far), running; SPECULATIVE ones buffer.
        The client's tools are the session's unless `client_tools` (one response's own) is given."""
        core, c = self.core, self.core.config
        reply = Reply(
            new_id("resp"),
            new_id("item"),
            None,
            core.emit,
            c.output_rate,
            speculative=speculative,
            lead_ms=c.lead_ms,
            sleep=core.sleep,
            clock=core.clock,
        )
        reply.on_done = self._reply_done
        reply.user_item_id = item.id if item is not None else None

        async def prepare() -> Sequence[Message] | None:
            if item is not None and speculative:
                text = await self.transcripts.final_text(item)
                reply.stamps["transcript"] = core.clock()
                if not text:
                    return self._apology(item, plan)
                messages = [*turns.history(core.items, skip=item.continues), Message("user", text)]
            else:
                try:
                    # Bounded: each transcript settles within transcript_timeout_s anyway.
                    async with asyncio.timeout(c.transcript_timeout_s):
                        for pending in list(core.items):
                            await pending.ready.wait()
                except TimeoutError:
                    log.warning("reply %s: answering without a transcript that is late", reply.response_id)
                messages = turns.history(core.items)
                if item is not None:
                    reply.stamps["transcript"] = item.timings.get("transcript", core.clock())
                    if not item.text:
                        return self._apology(item, plan)
            if core.items and not speculative:
                reply.previous_item_id = core.items[-1].id
            else:
                reply.previous_item_id = item.id if item is not None else None
            said = messages[-1].text if messages and messages[-1].role == "user" else ""
            if fixed_text is None and c.emergency_number and emergency.detect(said) is not None:
                # Whatever the model would say: the calm words, at once (the gateway tells the family).
                plan.fixed_text = emergency.reply(c.language, c.emergency_number)
            return messages

        plan = ReplyPlan(
            core.engines.llm,
            core.context,
            core.engines.tts_for(c.language),
            c.language,
            c.speed,
            fixed_text=fixed_text,
            apology=c.apology,
            tools=core.tools,
            client=core.client_tools if client_tools is None else client_tools,
        )
        reply.task = core.spawn(reply.run(prepare, plan))
        return reply

    def _apology(self, item: Item, plan: ReplyPlan) -> Sequence[Message] | None:
        """Nothing to answer: silence for a turn with no words (noise), a short apology (asking
        them to say it again) for one whose transcription failed."""
        if item.failure is None or not plan.apology:
            return None
        plan.fixed_text = plan.apology
        return []

    def make_live(self, reply: Reply) -> None:
        """`reply` is the one the caller hears now; a live one before it is cut."""
        old = self.reply
        if old is not None and old.active and old is not reply:
            old.cancel("turn_detected")
        self.reply = reply
        self.replies[reply.item_id] = reply

    def _reply_done(self, reply: Reply) -> None:
        """The reply's items join the conversation: its message (unless it only called client
        tools), then its function calls. Called in the same step as its ResponseDone is queued, so
        they are here before the client can hear of them and answer a call."""
        if self.reply is reply:
            self.reply = None
        if reply.state is State.DONE and reply.status is not None:
            items: list[Item] = []
            if reply.has_message:
                items.append(
                    Item(
                        reply.item_id, "assistant", "audio", reply.text, reply.status, timings=reply.timings()
                    )
                )
            for handed in reply.client_calls:
                items.append(
                    Item(handed.item.item_id, "assistant", "function_call", call=handed.call, ran=handed.ran)
                )
            for new in items:
                new.ready.set()
            self.core.items += items
        self.core.last_activity = self.core.clock()
