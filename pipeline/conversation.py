"""The conversation core: caller audio and client requests in, output events out. No sockets here.

Feed it with `push_audio` (raw PCM at the session's input rate, any chunk size) and the client's
requests (`commit`, `add_text`, `create_response`, `cancel_response`, `truncate`, ...); drain
`out`, an asyncio queue of `pipeline.events`. The per-frame path is synchronous and cheap::

    pcm -> Resampler(16 kHz) -> 20 ms frames -> Vad -> Endpointer -> StreamingTranscriber.push

and the endpointer's events drive everything else:

- TurnStarted: SpeechStarted goes out; if a reply is playing and `interrupt_response`, its audio is
  *held* at once (barge-in). The hold becomes a cancel when the caller is really talking (voiced
  for `confirm_voiced_ms`, or the turn's transcript has words); a cough (voiced < `cough_ms`) or
  no words within `false_interruption_s` resumes the reply where the caller stopped hearing it.
- PauseBegan: the final decode starts (`speculate`) and, with `create_response`, a *speculative
  reply* on that transcript: LLM and first TTS run while the endpointer is still waiting, their
  events buffered. SpeechResumed discards both.
- TurnEnded: the turn is committed and the speculative reply released (or a reply started now).
- A turn that starts while our answer to the last is barely heard *rejoins* it (`turns.rejoins`):
  one transcript over both turns' audio; the earlier user item is deleted on commit (`ItemDeleted`).

Replies are `pipeline.reply.Reply` tasks; blocking model work runs off the loop inside the engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pipeline import EngineError, turns
from pipeline.audio import PCM, Resampler
from pipeline.endpointing import Endpointer, PauseBegan, SpeechResumed, TurnEnded, TurnStarted
from pipeline.engines.base import ChatContext, Message
from pipeline.events import (
    ErrorEvent,
    InputCleared,
    InputCommitted,
    ItemCreated,
    ItemDeleted,
    ItemTruncated,
    OutputEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptFailed,
    TranscriptFinal,
)
from pipeline.reply import Reply, ReplyPlan
from pipeline.stt_stream import StreamingTranscriber
from pipeline.turns import SENTENCE_END, Barge, CallConfig, CallEngines, Item, new_id
from pipeline.vad import FRAME_MS, SAMPLE_RATE, FrameSplitter, Vad

log = logging.getLogger(__name__)

#: A rejoined turn is decoded whole: past this much audio, the next turn starts afresh instead.
REJOIN_MAX_S = 30.0


class Conversation:
    """One call's conversation state and its turn-taking. Use from one event loop; see module doc."""

    def __init__(
        self,
        engines: CallEngines,
        context: ChatContext,
        config: CallConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engines, self.context, self.config, self.clock = engines, context, config, clock
        self.sleep = sleep
        self.out: asyncio.Queue[OutputEvent] = asyncio.Queue()
        self.items: list[Item] = []
        self.reply: Reply | None = None  # the released reply being spoken
        self.spec: Reply | None = None  # a speculative reply waiting for the turn to end
        self.replies: dict[str, Reply] = {}  # by assistant item id, for truncation
        self.stt = StreamingTranscriber(
            engines.stt, config.language, clock=clock, min_utterance_s=config.partial_after_s
        )
        self.last_activity = clock()
        #: When the caller last spoke or sent something (the idle watchdog reads it).
        self.last_caller_activity = clock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._splitter = FrameSplitter()
        self._input: list[PCM] = []  # audio since the last commit/clear (turn detection off)
        self._t_ms = 0
        self._turn: Item | None = None
        #: The last committed user audio turn while its audio is still in the transcriber.
        self._open: Item | None = None
        self._turn_stamps: dict[str, float] = {}
        self._last_voiced = clock()
        self._barge: Barge | None = None
        self._noise_turn: Item | None = None
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_sent = ""
        self.configure()

    # --- configuration -------------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Apply session changes (`CallConfig` field names); rebuilds VAD and endpointer settings."""
        for k, v in changes.items():
            setattr(self.config, k, v)
        c = self.config
        self._resampler = Resampler(c.input_rate, SAMPLE_RATE)
        self._vad = Vad(c.threshold)
        old = getattr(self, "_ep", None)
        self._ep = Endpointer(
            silence_ms=c.silence_duration_ms,
            prefix_padding_ms=c.prefix_padding_ms,
            min_silence_ms=c.min_silence_ms,
            max_silence_ms=c.max_silence_ms,
            learn_restarts=False,
        )
        if old is not None:
            self._ep.pauses.extend(old.pauses)  # what we learned about the speaker survives
        self._prefix: deque[tuple[int, PCM]] = deque(maxlen=(c.prefix_padding_ms + 200) // FRAME_MS)
        self.stt.language = c.language
        self.context = dataclasses.replace(self.context, language=c.language)

    # --- audio in ------------------------------------------------------------------------------

    def push_audio(self, pcm: PCM) -> None:
        """Caller audio at `config.input_rate`. Cheap and synchronous; call it for every chunk."""
        for frame in self._splitter.push(self._resampler.push(pcm)):
            self._on_frame(frame)

    def _on_frame(self, frame: PCM) -> None:
        t = self._t_ms
        self._t_ms += FRAME_MS
        if not self.config.turn_detection:
            self._input.append(frame)
            return
        now = self.clock()
        voiced = self._vad.is_speech(frame)
        if voiced:
            self._last_voiced = now
        if self._ep.in_turn:
            self.stt.push(frame)
            self._ep.hold_end = (
                self.config.speculative and self._turn is not None and not turns.finished(self._turn)
            )
        else:
            self._prefix.append((t, frame))
        for event in self._ep.feed(voiced, t):
            if isinstance(event, TurnStarted):
                self._turn_started(event)
            elif isinstance(event, PauseBegan):
                self._pause_began(now)
            elif isinstance(event, SpeechResumed):
                self._speech_resumed()
            elif isinstance(event, TurnEnded):
                self._turn_ended(event, now)
        barge = self._barge
        if barge is not None:
            if self._ep.in_turn and self._ep.voiced_ms >= self.config.confirm_voiced_ms:
                self._confirm_barge()
            elif not self._ep.in_turn and now - barge.since > self.config.false_interruption_s:
                self._resume_barge()
        if self._ep.in_turn and self._partial_task is None and self.stt.should_partial(now):
            self._partial_task = self._spawn(self._partial(self._turn))

    def _turn_started(self, event: TurnStarted) -> None:
        self.last_activity = self.last_caller_activity = self.clock()
        last = self.replies.get(self.items[-1].id) if self.items else None
        heard = last.played_ms() if last is not None else (self.reply.played_ms() if self.reply else 0.0)
        previous = next((i for i in reversed(self.items) if i.role == "user" and i.kind == "audio"), None)
        gap, unheard = event.gap_ms, heard < self.config.rejoin_unheard_ms
        if gap is not None and gap <= self._ep.max_silence_ms and unheard and previous:
            # They carried on before our answer got going: perhaps we ended their turn in a pause.
            self._spawn(self._learn_pause(previous, gap))
        item = Item(new_id("item"), "user", "audio", status="in_progress")
        self._turn, self._partial_sent = item, ""
        if turns.rejoins(self._open, self.reply, gap, self.config) and self.stt.duration_s < REJOIN_MAX_S:
            item.continues = self._open
            self.stt.carry_on()
        else:
            self.stt.reset()
        self._open = None
        for t, frame in self._prefix:
            if t >= event.start_ms:
                self.stt.push(frame)
        self._prefix.clear()
        self._emit(SpeechStarted(item.id, event.start_ms))
        reply = self.reply
        if (
            reply is not None
            and reply.status is None
            and self.config.interrupt_response
            and self._barge is None
        ):
            reply.hold()  # silence within this frame; cancel or resume once we know more
            self._barge = Barge(reply, self.clock(), item)

    def _pause_began(self, now: float) -> None:
        self._turn_stamps = {"speech_end": self._last_voiced}
        if self._barge is not None and self._ep.voiced_ms < self.config.cough_ms:
            # A knock or a cough: let the reply go on at once; speaking on will hold it again.
            self._noise_turn = self._turn
            self._resume_barge()
        if not self.config.speculative or self._turn is None:
            return
        if self._turn.transcript_task is None:
            self.stt.speculate()
            self._turn.transcript_task = self._spawn(self.stt.final())
        if self.config.create_response:
            self.spec = self._start_reply(self._turn, speculative=True)

    def _speech_resumed(self) -> None:
        reply = self.reply
        if self._noise_turn is self._turn and reply is not None and reply.status is None and self._turn:
            reply.hold()
            self._barge = Barge(reply, self.clock(), self._turn)
        self._noise_turn = None
        self.stt.cancel_speculation()
        if self.spec is not None:
            self.spec.discard()
            self.spec = None
        if self._turn is not None:
            self._turn.forget_transcript()

    def _turn_ended(self, event: TurnEnded, now: float) -> None:
        item, self._turn = self._turn, None
        if item is None:
            return
        self._emit(SpeechStopped(item.id, event.speech_end_ms))
        self._turn_stamps.setdefault("speech_end", self._last_voiced)
        self._turn_stamps["turn_end"] = now
        item.timings.update(self._turn_stamps)
        barge = self._barge
        playing = self.reply is not None and self.reply.status is None
        if (barge is not None or playing) and self._ep.voiced_ms < self.config.cough_ms:
            self._drop_turn(item)  # a cough or a knock during the reply, not words: carry on speaking
            self._resume_barge()
            return
        if barge is not None:
            # Words or noise? The transcript decides; the reply stays on hold until it does.
            self._spawn(self._settle_barge(barge, item))
            return
        self._commit_turn(item)

    def _commit_turn(self, item: Item) -> None:
        joined = item.continues
        if joined is not None and joined in self.items:
            # One utterance after all: this turn's transcript covers the earlier one's words.
            self.items.remove(joined)
            self._emit(ItemDeleted(joined.id))
        previous = self.items[-1].id if self.items else None
        item.status = "completed"
        self.items.append(item)
        self._emit(InputCommitted(item.id, previous))
        self._emit(ItemCreated(item.id, previous, "user", "input_audio"))
        item.committed = True
        self._open = item
        self._announce(item)
        spec = self.spec if self.spec is not None and self.spec.user_item_id == item.id else None
        if spec is not None:
            self.spec = None
        self._spawn(self._transcribe(item))  # announced once, even if the reply is cancelled early
        if spec is not None and spec.status is None:
            spec.stamps.update(item.timings)
            self._make_live(spec)
            spec.release()
            return
        if self.config.create_response:
            reply = self._start_reply(item, speculative=False)
            reply.stamps.update(item.timings)
            self._make_live(reply)

    def _drop_turn(self, item: Item | None = None) -> None:
        """Forget a turn that was noise (or cleared): its decode and its speculative reply."""
        if self._turn is None or self._turn is item:
            self.stt.reset()
            self._open = None
        if self.spec is not None and (item is None or self.spec.user_item_id == item.id):
            self.spec.discard()
            self.spec = None

    async def _learn_pause(self, previous: Item, gap_ms: int) -> None:
        """Count the gap as their pause unless the turn we ended was a finished sentence."""
        await previous.ready.wait()
        if not previous.text.rstrip().endswith(SENTENCE_END):
            self._ep.pauses.append(gap_ms)

    # --- transcripts ---------------------------------------------------------------------------

    async def _partial(self, item: Item | None) -> None:
        try:
            partial = await self.stt.partial()
            if item is not None and item is self._turn and partial.stable.startswith(self._partial_sent):
                delta = partial.stable[len(self._partial_sent) :]
                if delta.strip():
                    self._partial_sent = partial.stable
                    self._emit(TranscriptDelta(item.id, delta))
        except EngineError as e:
            log.warning("partial transcript failed: %s", e)
        finally:
            self._partial_task = None

    async def _transcript_of(self, item: Item) -> tuple[str, str | None]:
        """The turn's transcript (one decode per turn, usually the speculation's) and any failure."""
        if item.transcript_task is None:
            item.transcript_task = self._spawn(self.stt.final())
        try:
            transcript = await asyncio.shield(item.transcript_task)
        except EngineError as e:
            log.warning("transcription failed: %s", e)
            return "", str(e)
        except Exception:
            # An engine bug, not a reported failure: the turn must still settle, or every later
            # reply (which waits for the transcripts before it) would wait forever.
            log.exception("transcription raised unexpectedly")
            return "", "Transcription failed."
        return transcript.text.strip(), None

    async def _final_text(self, item: Item) -> str:
        """The turn's transcript, stored on the item (and announced once the turn is committed)."""
        text, failure = await self._transcript_of(item)
        if not item.ready.is_set():
            item.text, item.failure = text, failure
            item.timings["transcript"] = self.clock()
            item.ready.set()
        self._announce(item)
        return item.text

    def _announce(self, item: Item) -> None:
        """Send the transcript events once: only after `committed`, so the order is always right."""
        if item.committed and item.ready.is_set() and not item.announced:
            item.announced = True
            if item.failure is not None:
                self._emit(TranscriptFailed(item.id, item.failure))
            else:
                self._emit(TranscriptFinal(item.id, item.text))

    async def _transcribe(self, item: Item) -> None:
        await self._final_text(item)

    # --- replies -------------------------------------------------------------------------------

    def _start_reply(self, item: Item | None, *, speculative: bool, fixed_text: str | None = None) -> Reply:
        c = self.config
        reply = Reply(
            new_id("resp"),
            new_id("item"),
            None,
            self._emit,
            c.output_rate,
            speculative=speculative,
            lead_ms=c.lead_ms,
            sleep=self.sleep,
            clock=self.clock,
        )
        reply.on_done = self._reply_done
        reply.user_item_id = item.id if item is not None else None

        async def prepare() -> Sequence[Message] | None:
            if item is not None and speculative:
                text = await self._final_text(item)
                reply.stamps["transcript"] = self.clock()
                if not text:
                    return None
                messages = [*turns.history(self.items, skip=item.continues), Message("user", text)]
            else:
                for pending in self.items:
                    await pending.ready.wait()
                messages = turns.history(self.items)
                if item is not None:
                    reply.stamps["transcript"] = item.timings.get("transcript", self.clock())
                    if not item.text:
                        return None
            reply.previous_item_id = (
                self.items[-1].id
                if self.items and not speculative
                else (item.id if item is not None else None)
            )
            return messages

        plan = ReplyPlan(
            self.engines.llm,
            self.context,
            self.engines.tts_for(c.language),
            c.language,
            c.speed,
            fixed_text=fixed_text,
            apology=c.apology,
        )
        reply.task = self._spawn(reply.run(prepare, plan))
        return reply

    def _make_live(self, reply: Reply) -> None:
        old = self.reply
        if old is not None and old.status is None and old is not reply:
            old.cancel("turn_detected")
        self.reply = reply
        self.replies[reply.item_id] = reply

    def _reply_done(self, reply: Reply) -> None:
        if self.reply is reply:
            self.reply = None
        if reply.released and reply.status in ("completed", "cancelled", "failed"):
            self.items.append(
                Item(reply.item_id, "assistant", "audio", reply.text, reply.status, timings=reply.timings())
            )
            self.items[-1].ready.set()
        self.last_activity = self.clock()

    def _confirm_barge(self) -> None:
        barge, self._barge = self._barge, None
        if barge is not None:
            barge.reply.cancel("turn_detected")

    def _resume_barge(self) -> None:
        barge, self._barge = self._barge, None
        if barge is not None and barge.reply.status is None:
            barge.reply.resume()

    async def _settle_barge(self, barge: Barge, item: Item) -> None:
        """A barge-in turn of middling length ended: words cancel the reply, no words resume it."""
        text, _ = await self._transcript_of(item)
        before = item.continues.text if item.continues is not None else ""  # a rejoined turn's words
        if len(text.split()) <= len(before.split()):
            self._drop_turn(item)
            if self._barge is barge:
                self._resume_barge()
            return
        if self._barge is barge:
            self._confirm_barge()
        self._commit_turn(item)

    # --- client requests -----------------------------------------------------------------------

    def commit(self, event_id: str | None = None) -> None:
        """input_audio_buffer.commit: the buffered audio becomes a user turn."""
        if self.config.turn_detection:
            if self._turn is None:
                self._error(
                    "Error committing input audio buffer: the buffer is empty.",
                    "input_audio_buffer_commit_empty",
                    event_id,
                )
                return
            voiced = self._ep.voiced_ms
            self._pause_began(self.clock())
            self._ep.reset()
            self._ep.voiced_ms = voiced  # what the barge-in rules look at
            self._turn_ended(TurnEnded(self._t_ms, 0), self.clock())
            return
        if sum(len(f) for f in self._input) < SAMPLE_RATE // 10:
            self._error(
                "Error committing input audio buffer: buffer too small, expected at least 100ms of audio.",
                "input_audio_buffer_commit_empty",
                event_id,
            )
            return
        frames, self._input = self._input, []
        self.stt.reset()
        for f in frames:
            self.stt.push(f)
        item = Item(new_id("item"), "user", "audio", status="in_progress")
        item.timings = {"speech_end": self.clock()}
        saved, self.config.create_response = self.config.create_response, False
        try:
            self._commit_turn(item)
        finally:
            self.config.create_response = saved

    def clear_input(self) -> None:
        """input_audio_buffer.clear."""
        self._input = []
        if self._turn is not None:
            self._ep.reset()
            self._turn = None
            self._drop_turn()
        self._emit(InputCleared())

    def add_text(self, role: str, text: str, item_id: str | None = None) -> Item:
        """conversation.item.create with text content."""
        self.last_caller_activity = self.clock()
        previous = self.items[-1].id if self.items else None
        item = Item(item_id or new_id("item"), role, "text", text)
        item.ready.set()
        self.items.append(item)
        kind = "input_text" if role != "assistant" else "text"
        self._emit(ItemCreated(item.id, previous, role, kind, text))  # type: ignore[arg-type]
        return item

    def create_response(self, event_id: str | None = None, *, fixed_text: str | None = None) -> Reply | None:
        """response.create (or a spoken prompt with `fixed_text`): answer the conversation so far."""
        if self.reply is not None and self.reply.status is None:
            self._error(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
                event_id,
            )
            return None
        reply = self._start_reply(None, speculative=False, fixed_text=fixed_text)
        reply.stamps["speech_end"] = self.clock()
        self._make_live(reply)
        return reply

    def cancel_response(self, event_id: str | None = None) -> None:
        """response.cancel."""
        if self.reply is None or self.reply.status is not None:
            self._error(
                "Cancellation failed: no active response found.", "response_cancel_not_active", event_id
            )
            return
        self.reply.cancel("client_cancelled")

    def truncate(
        self, item_id: str, content_index: int, audio_end_ms: int, event_id: str | None = None
    ) -> None:
        """conversation.item.truncate: keep only the text of the first `audio_end_ms` of the reply."""
        reply = self.replies.get(item_id)
        if reply is None:
            self._error(
                f"Item '{item_id}' is not an assistant audio item.", "item_truncate_invalid_item_id", event_id
            )
            return
        if audio_end_ms < 0 or audio_end_ms > reply.audio_ms + 1:
            self._error(
                f"audio_end_ms {audio_end_ms} is beyond the item's {int(reply.audio_ms)} ms of audio.",
                "invalid_value",
                event_id,
            )
            return
        text = reply.text_until(audio_end_ms)
        if reply.status is None:
            reply.hold()
            reply.sent_ms = min(reply.sent_ms, float(audio_end_ms))
        for item in self.items:
            if item.id == item_id:
                item.text = text
        reply.text = text if reply.status is not None else reply.text
        self._emit(ItemTruncated(item_id, content_index, audio_end_ms, text))

    def delete_item(self, item_id: str, event_id: str | None = None) -> None:
        for i, item in enumerate(self.items):
            if item.id == item_id:
                del self.items[i]
                if item is self._open:
                    self._open = None
                self._emit(ItemDeleted(item_id))
                return
        self._emit(
            ErrorEvent(
                f"Item '{item_id}' does not exist.", code="item_delete_invalid_item_id", event_id=event_id
            )
        )

    def turn_timings(self, item_id: str) -> dict[str, float]:
        """A user turn's milliseconds from the end of speech to turn end and to its transcript."""
        item = next((i for i in self.items if i.id == item_id), None)
        return item.timings_ms() if item is not None else {}

    @property
    def busy(self) -> bool:
        """True while the caller is mid-turn or a reply is being spoken."""
        return self._ep.in_turn or (self.reply is not None and self.reply.status is None)

    # --- plumbing ------------------------------------------------------------------------------

    def _emit(self, event: OutputEvent) -> None:
        self.out.put_nowait(event)

    def _error(self, message: str, code: str, event_id: str | None) -> None:
        self._emit(ErrorEvent(message, code=code, event_id=event_id))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conversation task failed", exc_info=task.exception())

    async def aclose(self) -> None:
        """Hang up: stop every reply and decode this call started."""
        for reply in (self.reply, self.spec):
            if reply is not None and reply.status is None:
                reply.cancel("call_ended")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.stt.aclose()
        st = self.stt.stats
        log.info(
            "call ended: speculative hits %d misses %d cancelled %d; final decodes %s s; final waits %s s",
            st.speculative_hits,
            st.speculative_misses,
            st.speculations_cancelled,
            [round(x, 2) for x in st.final_decode_s],
            [round(x, 2) for x in st.final_wait_s],
        )
