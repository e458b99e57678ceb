"""The conversation core: caller audio and client requests in, output events out. No sockets here.

Feed it with `push_audio` (raw PCM at the session's input rate, any chunk size) and the client's
requests (`commit`, `add_text`, `create_response`, `cancel_response`, `truncate`, ...); drain it
with `next_event()` (or read `out`, an asyncio queue of `pipeline.events`). The per-frame path is
synchronous and cheap::

    pcm -> Resampler(16 kHz) -> 20 ms frames -> Vad -> Endpointer -> StreamingTranscriber.push

and the endpointer's events drive the turn-taking in `pipeline.floor` (barge-in: `pipeline.bargein`;
transcripts: `pipeline.transcripts`; one reply: `pipeline.reply`). This class is the facade: the
session, the audio path, and the client's requests.

Replies are `pipeline.reply.Reply` tasks; blocking model work runs off the loop inside the engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline import turns
from pipeline.audio import PCM, Resampler
from pipeline.completeness import Completeness, judge
from pipeline.core import CallCore
from pipeline.endpointing import Endpointer, PauseBegan, SpeechResumed, TurnEnded, TurnStarted
from pipeline.engines.base import ChatContext, ToolCall
from pipeline.events import (
    CallItemCreated,
    InputCleared,
    ItemCreated,
    ItemDeleted,
    ItemTruncated,
    OutputEvent,
    ReplyAudio,
)
from pipeline.floor import Floor
from pipeline.reply import Reply
from pipeline.tools import ClientTools, ToolRunner, client_result
from pipeline.transcripts import Transcripts
from pipeline.turn_end import EndOfTurn, SpeakerHabits, TurnEndPolicy
from pipeline.turns import CallConfig, CallEngines, Item, new_id
from pipeline.vad import FRAME_MS, SAMPLE_RATE, FrameSplitter, Vad

log = logging.getLogger(__name__)

#: Prefix padding kept before a turn at most: more is silence that tells the decoder nothing, and
#: a huge setting must not keep minutes of audio per call.
PREFIX_MAX_MS = 5000

__all__ = ["CallConfig", "Conversation"]


class Conversation:
    """One call's conversation. Use from one event loop; see the module doc."""

    def __init__(
        self,
        engines: CallEngines,
        context: ChatContext,
        config: CallConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tools: ToolRunner | None = None,
    ) -> None:
        self.core = core = CallCore(engines, context, config, clock=clock, sleep=sleep, tools=tools)
        self.config, self.clock, self.out, self.items = config, clock, core.out, core.items
        self.stt = core.stt
        self._ep = Endpointer(words_decide=True)
        self.transcripts = Transcripts(core, on_words=self._words_known)
        self.floor = Floor(core, self._ep, self.transcripts)
        self.floor.on_rejoined = self._rejoined
        self.turn_end = EndOfTurn(getattr(engines, "turn", None), TurnEndPolicy(), core.spawn, clock)
        self._splitter = FrameSplitter()
        self._input: list[PCM] = []  # audio since the last commit/clear (turn detection off)
        self._input_full = False  # said so once since the last commit/clear
        self._t_ms = 0
        self.configure()

    @property
    def context(self) -> ChatContext:
        return self.core.context

    @context.setter
    def context(self, value: ChatContext) -> None:
        self.core.context = value

    @property
    def client_tools(self) -> ClientTools:
        """The client's own tools (the session's), offered in every reply from now on."""
        return self.core.client_tools

    @client_tools.setter
    def client_tools(self, value: ClientTools) -> None:
        self.core.client_tools = value

    # --- configuration -------------------------------------------------------------------------

    @property
    def habits(self) -> SpeakerHabits:
        """How this caller pauses, as learned so far: keep it for their next call."""
        return SpeakerHabits(tuple(self._ep.pauses), tuple(self.turn_end.went_on_after))

    def learn_habits(self, habits: SpeakerHabits) -> None:
        """Start from what earlier calls learned about this caller's pauses (before any audio)."""
        self._ep.pauses.extend(habits.pauses_ms)
        self.turn_end.went_on_after.extend(habits.went_on_ms)

    def configure(self, **changes: Any) -> None:
        """Apply session changes (`CallConfig` field names); retunes VAD and endpointer settings.

        What the endpointer learned about the speaker, and a turn in progress, survive.
        """
        listening = self.config.turn_detection
        for k, v in changes.items():
            setattr(self.config, k, v)
        c = self.config
        if listening and not c.turn_detection and self.floor.turn is not None:
            # Turn detection off mid-turn: the words so far become a turn (nothing is lost), not
            # answered, as a manual commit is not; the endpointer is left with no turn to finish.
            self._end_turn_now(respond=False)
        self._resampler = Resampler(c.input_rate, SAMPLE_RATE, low_latency=True)
        self._vad = Vad(c.threshold)
        ep = self._ep
        ep.silence_ms, ep.prefix_padding_ms = c.silence_duration_ms, c.prefix_padding_ms
        ep.min_silence_ms = c.min_silence_ms
        ep.max_silence_ms = max(c.max_silence_ms, c.min_silence_ms)
        ep.barely_heard_ms = c.rejoin_unheard_ms
        self.turn_end.policy = TurnEndPolicy(
            finished_ms=c.end_finished_ms,
            max_ms=ep.max_silence_ms,
            doubt_ms=c.end_doubt_ms,
            audio_threshold=c.end_audio_threshold,
            end_word_p=c.end_word_p.get(c.language, 0.0),
            end_alt_p=c.end_alt_p.get(c.language),
        )
        prefix_ms = min(c.prefix_padding_ms, PREFIX_MAX_MS)
        self._prefix: deque[tuple[int, PCM]] = deque(maxlen=(prefix_ms + 200) // FRAME_MS)
        self.stt.language = c.language
        self.core.context = dataclasses.replace(self.core.context, language=c.language)

    # --- audio in ------------------------------------------------------------------------------

    def push_audio(self, pcm: PCM) -> None:
        """Caller audio at `config.input_rate`. Cheap and synchronous; call it for every chunk."""
        for frame in self._splitter.push(self._resampler.push(pcm)):
            self._on_frame(frame)

    def _on_frame(self, frame: PCM) -> None:
        t = self._t_ms
        self._t_ms += FRAME_MS
        if not self.config.turn_detection:
            if len(self._input) * FRAME_MS < self.config.max_input_audio_s * 1000:
                self._input.append(frame)
            elif not self._input_full:
                self._input_full = True
                self.core.error(
                    f"The input audio buffer is full ({self.config.max_input_audio_s:g} s): "
                    "audio past it is dropped; commit or clear the buffer.",
                    "input_audio_buffer_full",
                    None,
                )
            return
        now = self.clock()
        floor, ep = self.floor, self._ep
        if ep.in_turn and self.stt.duration_s >= self.config.max_input_audio_s:
            self.core.error(
                f"The turn reached {self.config.max_input_audio_s:g} s and was committed there; "
                "speech after it starts a new turn.",
                "input_audio_buffer_full",
                None,
            )
            self._end_turn_now()
        voiced = self._vad.is_speech(frame)
        if voiced:
            floor.last_voiced = now
        if ep.in_turn:
            self.stt.push(frame)
            self.core.last_activity = now
            ep.end_silence_ms = self._end_silence_ms()
            # A decode started in a shorter pause costs nothing while the decoder is idle: start it
            # sooner then (most such pauses are between words, and the decode is thrown away).
            # Only silent frames can announce a pause, so only they ask whether it is idle.
            early = self.config.early_pause_ms if not voiced and self.config.speculative else 0
            ep.early_pause_ms = early if early and self.stt.idle else 0
        else:
            self._prefix.append((t, frame))
            ep.heard(floor.heard_ms())
        for event in ep.feed(voiced, t):
            self._dispatch(event, now)
        if ep.in_turn and not self.turn_end.pausing and ep.silent_ms >= ep.pause_trigger_ms:
            # The end-of-turn model hears the pause at the same length however early the decode
            # started (`pause_trigger_ms`, 160 ms: Smart Turn is meant to hear ~200 ms of it).
            self.turn_end.paused(lambda: self.stt.tail(8.0))
        barge = floor.barge
        silent_ms = ep.silent_ms if ep.in_turn else 0
        if barge is not None and barge.frame(
            in_turn=ep.in_turn, voiced_ms=ep.voiced_ms, silent_ms=silent_ms, now=now, config=self.config
        ):
            floor.barge = None
        if ep.in_turn:
            self.transcripts.maybe_partial(now)

    def _end_silence_ms(self) -> int | None:
        """The silence that ends the turn in progress: decided from its words and sound while the
        final decode runs in its pauses (speculation); without it, the speaker's learned silence."""
        turn = self.floor.turn
        if not self.config.speculative or turn is None:
            return None
        words = turns.words_so_far(turn)
        return self.turn_end.silence_ms(words, self.config.language, self._ep.required_silence_ms())

    def _dispatch(self, event: Any, now: float, *, respond: bool | None = None) -> None:
        floor = self.floor
        if isinstance(event, TurnStarted):
            self.turn_end.begin()
            floor.turn_started(event)
            for t, frame in self._prefix:
                if t >= event.start_ms:
                    self.stt.push(frame)
            self._prefix.clear()
        elif isinstance(event, PauseBegan):
            floor.pause_began(now)
        elif isinstance(event, SpeechResumed):
            self.turn_end.resumed(event.pause_ms)
            floor.speech_resumed()
        elif isinstance(event, TurnEnded):
            self._log_end_of_turn(event)
            floor.turn_ended(event, now, respond=respond)

    def _end_turn_now(self, *, respond: bool | None = None) -> None:
        now = self.clock()
        for event in self._ep.end_turn_now(self._t_ms):
            self._dispatch(event, now, respond=respond)

    def _log_end_of_turn(self, event: TurnEnded) -> None:
        """Keep how the turn's end was decided with its timings, and log it with its inputs."""
        decision, turn = self.turn_end.decision, self.floor.turn
        self.turn_end.resumed()
        if decision is None or turn is None or event.silence_ms == 0:
            return  # ended on the client's request, or with no decision made (no speculation)
        turn.end_of_turn = decision.as_timings()
        self.turn_end.ended(decision)
        words = turns.words_so_far(turn)
        weighed = words.end_alternatives[:1] if words is not None else ()
        log.info(
            "end of turn %s after %d ms of silence: %s (words %s: %s; ending p=%s; also weighed %s; "
            "sound p=%s; learned %d ms; patience %d ms)",
            turn.id,
            event.silence_ms,
            decision.reason,
            decision.words.value if decision.words else "-",
            decision.words_reason or "-",
            "-" if decision.end_p is None else f"{decision.end_p:.2f}",
            ", ".join(f"{text[-30:]!r} {p:.2f}" for text, p in weighed) or "-",
            "-" if decision.audio_p is None else f"{decision.audio_p:.2f}",
            decision.learned_ms,
            decision.patience_ms,
        )

    def _rejoined(self, item: Item) -> None:
        """They went on after a turn we ended in their pause (the two are one now): when its words
        read finished, the rules could not have known, so this caller gets more time from now on."""
        joined = item.continues
        if joined is not None and item.pause_before_ms is not None:
            self.turn_end.went_on(item.pause_before_ms, joined.end_of_turn, joined.text)

    def _words_known(self, item: Item) -> None:
        """A committed turn's words are in: the endpointer learns whether its end was a pause
        (not from a failed transcript: its words are unknown, not unfinished), and the end of turn
        whether a turn the caller went on in only added a question tag."""
        if item.kind == "audio" and item.failure is None:
            if item.continues is not None:
                self.turn_end.words_after_going_on(item.text)
            words = judge(item.text, self.config.language)
            self._ep.last_turn_words(finished=words.state is not Completeness.INCOMPLETE)

    # --- client requests -----------------------------------------------------------------------

    def commit(self, event_id: str | None = None) -> None:
        """input_audio_buffer.commit: the buffered audio becomes a user turn."""
        if self.config.turn_detection and self.floor.turn is not None:
            self._end_turn_now()
            return
        if self.config.turn_detection and not self._input:  # (audio appended while VAD was off)
            self.core.error(
                "Error committing input audio buffer: the buffer is empty.",
                "input_audio_buffer_commit_empty",
                event_id,
            )
            return
        if sum(len(f) for f in self._input) < SAMPLE_RATE // 10:
            self.core.error(
                "Error committing input audio buffer: buffer too small, expected at least 100ms of audio.",
                "input_audio_buffer_commit_empty",
                event_id,
            )
            return
        frames, self._input, self._input_full = self._input, [], False
        self.stt.reset()
        for f in frames:
            self.stt.push(f)
        item = Item(new_id("item"), "user", "audio", status="in_progress")
        item.timings = {"speech_end": self.clock()}
        self.floor.commit_turn(item, respond=False)

    def clear_input(self) -> None:
        """input_audio_buffer.clear."""
        self._input, self._input_full = [], False
        if self.floor.turn is not None:
            self._ep.reset()
            self.floor.clear()
        self.core.emit(InputCleared())

    def add_text(self, role: str, text: str, item_id: str | None = None) -> Item:
        """conversation.item.create with text content."""
        core = self.core
        core.last_caller_activity = self.clock()
        previous = core.previous_id()
        item = Item(item_id or new_id("item"), role, "text", text)
        item.ready.set()
        core.items.append(item)
        kind = "input_text" if role != "assistant" else "text"
        core.emit(ItemCreated(item.id, previous, role, kind, text))  # type: ignore[arg-type]
        return item

    def add_function_call(
        self,
        call_id: str | None,
        name: str,
        arguments: str,
        item_id: str | None = None,
        event_id: str | None = None,
    ) -> Item | None:
        """conversation.item.create with a function_call (a call of a client tool, as if the model
        had made it; `arguments` is a JSON object, checked by the caller). None when `call_id` is
        taken: an `item_create_invalid_call_id` error says so."""
        core = self.core
        call_id = call_id or new_id("call")
        if self._call(call_id) is not None:
            self.core.error(
                f"call_id '{call_id}' already names a function_call item of this conversation.",
                "item_create_invalid_call_id",
                event_id,
                param="item.call_id",
            )
            return None
        previous = core.previous_id()
        item = Item(
            item_id or new_id("item"),
            "assistant",
            "function_call",
            call=ToolCall(call_id, name, json.loads(arguments)),
        )
        item.ready.set()
        core.items.append(item)
        core.emit(
            CallItemCreated(item.id, previous, "function_call", call_id, name=name, arguments=arguments)
        )
        return item

    def add_function_output(
        self, call_id: str, output: str, item_id: str | None = None, event_id: str | None = None
    ) -> Item | None:
        """conversation.item.create with a function_call_output: the client's answer to a call of
        its tool, which the next reply sees. None (and an `item_create_invalid_call_id` error) when
        `call_id` names no function_call item, or one already answered."""
        core = self.core
        call = self._call(call_id)
        answered = any(i.result is not None and i.result.call_id == call_id for i in core.items)
        if call is None or answered:
            why = "already has an output" if answered else "names no function_call item of this conversation"
            core.error(
                f"call_id '{call_id}' {why}.", "item_create_invalid_call_id", event_id, param="item.call_id"
            )
            return None
        previous = core.previous_id()
        item = Item(
            item_id or new_id("item"), "tool", "function_call_output", result=client_result(call, output)
        )
        item.ready.set()
        core.items.append(item)
        core.emit(CallItemCreated(item.id, previous, "function_call_output", call_id, output=output))
        return item

    def _call(self, call_id: str) -> ToolCall | None:
        return next((i.call for i in self.core.items if i.call is not None and i.call.id == call_id), None)

    def create_response(
        self,
        event_id: str | None = None,
        *,
        fixed_text: str | None = None,
        client_tools: ClientTools | None = None,
    ) -> Reply | None:
        """response.create (or a spoken prompt with `fixed_text`): answer the conversation so far,
        offering the session's client tools, or `client_tools` for this response only."""
        if self.floor.replying:
            self.core.error(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
                event_id,
            )
            return None
        reply = self.floor.start_reply(
            None, speculative=False, fixed_text=fixed_text, client_tools=client_tools
        )
        reply.stamps["speech_end"] = self.clock()
        self.floor.make_live(reply)
        return reply

    def cancel_response(self, event_id: str | None = None) -> None:
        """response.cancel."""
        if not self.floor.replying:
            self.core.error(
                "Cancellation failed: no active response found.", "response_cancel_not_active", event_id
            )
            return
        assert self.floor.reply is not None
        self.floor.reply.cancel("client_cancelled")

    def truncate(
        self, item_id: str, content_index: int, audio_end_ms: int, event_id: str | None = None
    ) -> None:
        """conversation.item.truncate: keep only the text of the first `audio_end_ms` of the reply."""
        reply = self.floor.replies.get(item_id)
        if reply is None:
            self.core.error(
                f"Item '{item_id}' is not an assistant audio item.", "item_truncate_invalid_item_id", event_id
            )
            return
        if audio_end_ms < 0 or audio_end_ms > reply.audio_ms + 1:
            self.core.error(
                f"audio_end_ms {audio_end_ms} is beyond the item's {int(reply.audio_ms)} ms of audio.",
                "invalid_value",
                event_id,
            )
            return
        text = reply.text_until(audio_end_ms)
        if reply.active:
            reply.hold(at_ms=float(audio_end_ms))
        else:
            reply.text = text
        item = self.core.find(item_id)
        if item is not None:
            item.text = text
        self.core.emit(ItemTruncated(item_id, content_index, audio_end_ms, text))

    def delete_item(self, item_id: str, event_id: str | None = None) -> None:
        """conversation.item.delete."""
        item = self.core.find(item_id)
        if item is None:
            self.core.error(f"Item '{item_id}' does not exist.", "item_delete_invalid_item_id", event_id)
            return
        self.core.items.remove(item)
        if item is self.floor.open:
            self.floor.open = None
        self.core.emit(ItemDeleted(item_id))

    # --- what the gateway asks -----------------------------------------------------------------

    async def next_event(self) -> OutputEvent:
        """The next event to send. Reply audio made stale by a barge-in is dropped here."""
        while True:
            event = await self.out.get()
            if isinstance(event, ReplyAudio):
                reply = self.floor.replies.get(event.item_id)
                if reply is not None and not reply.audio_wanted:
                    continue
            return event

    def turn_timings(self, item_id: str) -> dict[str, float | str]:
        """A user turn's milliseconds from the end of speech to turn end and to its transcript."""
        item = self.core.find(item_id)
        return item.timings_ms() if item is not None else {}

    @property
    def busy(self) -> bool:
        """True while the caller is mid-turn or a reply is live."""
        return self._ep.in_turn or self.floor.replying

    def idle_for(self, now: float) -> float:
        """Seconds (on the call's clock) since anything happened: 0 while busy."""
        if self.busy:
            return 0.0
        return max(0.0, now - max(self.core.last_activity, self.core.last_caller_activity))

    def caller_idle_for(self, now: float) -> float:
        """Seconds since the caller last started a turn or sent an item."""
        return max(0.0, now - self.core.last_caller_activity)

    async def aclose(self) -> None:
        """Hang up: stop every reply and decode this call started, and let go of every buffer."""
        floor = self.floor
        for reply in (floor.reply, floor.spec):
            if reply is not None:
                reply.cancel("call_ended")
        await self.core.aclose()
        self._input, self._input_full = [], False
        self._prefix.clear()
        self.stt.reset()
        floor.reply = floor.spec = floor.barge = floor.turn = floor.open = None
        for reply in floor.replies.values():
            reply.audio.release()
        for item in self.core.items:
            item.transcript_task = None
        st = self.stt.stats
        log.info(
            "call ended: speculative hits %d misses %d cancelled %d; partial decodes %d (%.1f s); "
            "final decodes %s s; final waits %s s",
            st.speculative_hits,
            st.speculative_misses,
            st.speculations_cancelled,
            len(st.partial_decode_s),
            sum(st.partial_decode_s),
            [round(x, 2) for x in st.final_decode_s],
            [round(x, 2) for x in st.final_wait_s],
        )
