"""One spoken reply: LLM text -> sentences -> TTS -> paced audio chunks that can be held, resumed or cut.

Three stages run in a `TaskGroup` with a queue between the first two::

    think (LLM deltas -> SentenceSegmenter) --sentences--> speak (TTS -> resample -> 100 ms chunks)
                                                            send (pacer: chunks -> ReplyAudio events)

so the first sentence is synthesised while the LLM is still writing, and the next sentence is
synthesised while the previous one plays. Audio is sent at playback pace plus `lead_ms` (the client
buffers no more than that), which is what makes barge-in stop the voice at once and lets the server
know how much of the reply the caller has heard.

A reply's life is one `State` (named the way websockets names its connection state)::

    SPECULATIVE --release()--> LIVE <--hold() / resume()--> HELD
         |                       |                            |
         +------------+----------+-------------+--------------+
                      v                        v
                   DROPPED                    DONE
     nothing of it reached the wire:   response.done went out; `status`
     discarded, nothing to answer, or  is its wire status (completed,
     cancelled before response.created cancelled, failed)

A *speculative* reply (started when the caller paused, before the turn was confirmed over) buffers
its events and sends no audio until `release()`; the conversation discards it if the caller goes on.
It runs no tool with effects before then, and a call of a client tool (`pipeline.tools.ClientTools`)
leaves only once the reply is released and its words are sent: the calls end the reply, after its
spoken message (if it said anything) and before response.done. A reply cut before then drops them,
so no call is ever half sent.
`hold()` pauses the audio (a possible barge-in), `resume()` re-sends from where the caller stopped
hearing, `cancel()` ends it as "cancelled" keeping only the heard text. Audio already queued for
the socket when a reply is held or cut is stale: `audio_wanted` says so, and the core drops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline import EngineError
from pipeline.audio import PCM, Resampler
from pipeline.engines.base import (
    ChatContext,
    LanguageModel,
    Message,
    TextToSpeech,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
)
from pipeline.events import (
    FunctionCall,
    OutputEvent,
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
)
from pipeline.scheduler import EngineScheduler, Priority
from pipeline.sentences import SentenceSegmenter
from pipeline.timeline import Timeline
from pipeline.tools import SIDE_EFFECTS, ClientTools, ToolRunner, error_result, run_call
from pipeline.turns import new_id

log = logging.getLogger(__name__)

#: What a reply needs before it can think: the history to send, or None for "nothing to answer".
Prepare = Callable[[], Awaitable[Sequence[Message] | None]]
#: Model turns that may call tools in one reply before it must answer in words.
MAX_TOOL_ROUNDS = 4


class State(enum.Enum):
    """Where a reply is in its life; see the module docstring for the transitions."""

    #: Started in the caller's pause: thinking and speaking, its events buffered, no audio sent.
    SPECULATIVE = "speculative"
    #: Released: events go out, audio is paced to the client as it is synthesised.
    LIVE = "live"
    #: Released, but its audio is paused (a possible barge-in, or truncated); generation goes on.
    HELD = "held"
    #: Ended with a response.done on the wire; `Reply.status` says how.
    DONE = "done"
    #: Ended without a trace: a discarded speculation, nothing to answer, or stopped before it began.
    DROPPED = "dropped"


@dataclass(slots=True)
class ReplyPlan:
    """How to produce the words: from the LLM (with this context) or a fixed text (apology, prompt)."""

    llm: LanguageModel | None
    context: ChatContext | None
    tts: TextToSpeech
    language: str
    speed: float = 1.0
    fixed_text: str | None = None
    apology: str = ""
    #: Runs the model's tool calls (the companion's tools); None: tool calls are ignored.
    tools: ToolRunner | None = None
    #: The client's own tools: offered to the model, never run here.
    client: ClientTools = field(default_factory=ClientTools)


@dataclass(frozen=True, slots=True)
class ClientCall:
    """A call of a client tool the reply hands out, as its function_call item."""

    item: FunctionCall
    call: ToolCall
    #: The companion's tools called in the same model turn, with their results (first call only).
    ran: tuple[tuple[ToolCall, ToolResult], ...] = ()


@dataclass(slots=True)
class Reply:
    response_id: str
    item_id: str
    previous_item_id: str | None
    emit_out: Callable[[OutputEvent], None]
    output_rate: int
    speculative: bool = False
    lead_ms: float = 300.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Monotonic stamps: speech_end, turn_end, transcript, llm_first_token, tts_first_audio, first_audio_sent.
    stamps: dict[str, float] = field(default_factory=dict)
    state: State = State.LIVE
    #: The wire status once DONE: completed, cancelled or failed.
    status: ResponseStatus | None = None
    text: str = ""
    task: asyncio.Task[None] | None = None
    #: The user turn this answers (None for response.create on text items and spoken prompts).
    user_item_id: str | None = None
    on_done: Callable[[Reply], None] | None = None
    _buffer: list[OutputEvent] = field(default_factory=list)
    _started: list[OutputEvent] = field(default_factory=list)
    _sent: int = 0  # index of the next chunk to send
    sent_ms: float = 0.0
    _play_end: float = 0.0
    _speaking_done: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _failed: str | None = None
    _usage: Usage = field(default_factory=Usage)
    #: The tools this reply ran, in order: (name, result).
    tool_calls: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    #: The client tool calls the model made (the last model turn's), with that turn's server calls.
    _client_calls: list[ToolCall] = field(default_factory=list)
    _ran: tuple[tuple[ToolCall, ToolResult], ...] = ()
    #: The calls that went out as function_call items, in order.
    client_calls: list[ClientCall] = field(default_factory=list)
    #: A ReplyTextDelta went out: the reply's message item is on the wire.
    spoke: bool = False

    audio: Timeline = field(init=False)

    def __post_init__(self) -> None:
        self.state = State.SPECULATIVE if self.speculative else State.LIVE
        if not self.speculative:
            self._released.set()
        self.audio = Timeline(self.output_rate)

    @property
    def active(self) -> bool:
        """Released and not ended: the reply the caller is hearing (or is about to)."""
        return self.state in (State.LIVE, State.HELD)

    @property
    def ended(self) -> bool:
        return self.state in (State.DONE, State.DROPPED)

    # --- control (called by the conversation, synchronously) -----------------------------------

    @property
    def has_message(self) -> bool:
        """Does the reply have a message item? Not when it only called client tools, silently."""
        return self.spoke or not self.client_calls

    def emit(self, event: OutputEvent) -> None:
        if isinstance(event, ResponseStarted):
            self._started.append(event)
        elif isinstance(event, ReplyTextDelta):
            self.spoke = True
        if self.state is State.SPECULATIVE:
            self._buffer.append(event)
        else:
            self.emit_out(event)

    def release(self) -> None:
        """The turn is confirmed: send what was buffered, and let the audio flow."""
        if self.state is not State.SPECULATIVE:
            return
        self.state = State.LIVE
        self._released.set()
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            self.emit_out(event)
        self._wake.set()

    def hold(self, at_ms: float | None = None) -> None:
        """Stop sending audio now (the caller may be interrupting); generation goes on.

        What was heard is frozen: the client's buffer counts as unheard. `at_ms` moves that point
        earlier (the client says it played less: a truncation).
        """
        if self.state is State.LIVE:
            self._freeze(self.played_ms())
            self.state = State.HELD
        if at_ms is not None and self.state is State.HELD and at_ms < self.sent_ms:
            self._freeze(max(0.0, at_ms))

    def resume(self) -> None:
        """It was not an interruption: go on from where the caller stopped hearing."""
        if self.state is not State.HELD:
            return
        self.state = State.LIVE
        self._play_end = self.clock()
        self._wake.set()

    def cancel(self, reason: str) -> None:
        """End the reply as cancelled, at once: response.done goes out now, the tasks stop soon.

        A speculative reply is discarded instead: nothing of it was sent.
        """
        if self.ended:
            return
        if self.state is State.SPECULATIVE:
            self.discard()
            return
        heard = self.played_ms()
        self._freeze(heard)
        self._finish("cancelled", heard, {"type": "cancelled", "reason": reason})
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def discard(self) -> None:
        """Drop a reply silently: a speculation that the caller's next words made stale."""
        if not self.ended:
            self.state = State.DROPPED
        if self.task is not None and not self.task.done():
            self.task.cancel()

    @property
    def audio_wanted(self) -> bool:
        """May audio of this reply already queued for the socket still go out? Not once it is
        held or cut (barge-in): the caller must not hear one more byte of it."""
        return self.state is State.LIVE or (self.state is State.DONE and self.status != "cancelled")

    def _freeze(self, heard_ms: float) -> None:
        """Count `heard_ms` as heard and the rest as unsent: the next audio starts from there."""
        self.sent_ms = heard_ms
        self._sent = self.audio.chunk_at(heard_ms)
        self._play_end = self.clock()

    # --- what was heard ------------------------------------------------------------------------

    def played_ms(self) -> float:
        """Audio the caller has heard by now: sent, minus what is still in the client's buffer."""
        buffered = max(0.0, self._play_end - self.clock()) * 1000.0
        return max(0.0, self.sent_ms - buffered)

    def text_until(self, ms: float) -> str:
        """The reply's text up to `ms` of its audio (a partly heard sentence is cut proportionally)."""
        return self.audio.text_until(ms)

    @property
    def audio_ms(self) -> float:
        return self.audio.total_ms

    # --- the work ------------------------------------------------------------------------------

    async def run(self, prepare: Prepare, plan: ReplyPlan) -> None:
        """Prepare (await the transcript), then think, speak and send. Never raises but CancelledError."""
        try:
            history = await prepare()
            if history is None:
                self.discard()  # nothing to answer (an empty or failed transcript)
                return
            self.emit(ResponseStarted(self.response_id, self.item_id, self.previous_item_id))
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._think(history, plan, sentences))
                tg.create_task(self._speak(plan, sentences))
                tg.create_task(self._send())
            if self._client_calls:
                # Side effects, like the companion's SIDE_EFFECTS: never from an unreleased reply
                # (its audio cannot have been sent either; this says it where the calls leave).
                await self._released.wait()
                self._hand_out_calls()  # they go out with response.done, in the same step
            status: ResponseStatus = "failed" if self._failed else "completed"
            details: dict[str, object] = {
                "type": "failed",
                "error": {"type": "server_error", "message": self._failed},
            }
            self._finish(status, self.audio.total_ms, details if self._failed else None)
        except asyncio.CancelledError:
            if not self.ended:
                self._finish(
                    "cancelled", self.played_ms(), {"type": "cancelled", "reason": "client_cancelled"}
                )
            raise
        except Exception as e:  # a TTS failure: the call goes on, this reply fails
            log.exception("reply %s failed", self.response_id)
            while isinstance(e, ExceptionGroup) and e.exceptions:  # the stage that failed, not its group
                e = e.exceptions[0]
            if not self.ended:
                error: dict[str, object] = {
                    "type": "failed",
                    "error": {"type": "server_error", "message": f"{type(e).__name__}: {e}"},
                }
                self._finish("failed", self.played_ms(), error)
        finally:
            self.audio.release()  # sent, or never will be: a long call keeps only the lengths
            if self.on_done is not None:
                self.on_done(self)

    async def _think(
        self, history: Sequence[Message], plan: ReplyPlan, out: asyncio.Queue[str | None]
    ) -> None:
        seg = SentenceSegmenter()
        try:
            if plan.fixed_text is not None or plan.llm is None or plan.context is None:
                self.stamps.setdefault("llm_first_token", self.clock())
                for s in seg.push(plan.fixed_text or ""):
                    await out.put(s)
            else:
                await self._converse(list(history), plan, seg, out)
        except EngineError as e:
            # Upstream trouble mid-reply: finish the sentence in hand, then apologise kindly.
            log.warning("LLM failed in reply %s: %s", self.response_id, e)
            self._failed = f"{type(e).__name__}: {e}"
            for s in seg.flush():
                await out.put(s)
            if plan.apology:
                await out.put(plan.apology)
            await out.put(None)
            return
        for s in seg.flush():
            await out.put(s)
        await out.put(None)

    async def _converse(
        self, history: list[Message], plan: ReplyPlan, seg: SentenceSegmenter, out: asyncio.Queue[str | None]
    ) -> None:
        """Stream the model's words into `seg`; when it calls tools, run them, send the results back
        and let it go on (at most MAX_TOOL_ROUNDS times). Words said before a call ("let me look")
        are spoken while the tool runs. A turn that calls a client tool is the last: the companion's
        calls in it run, and the client's are kept to hand out when the words are sent."""
        assert plan.llm is not None and plan.context is not None
        client = plan.client
        offered = client.offered
        client_names = {t.name for t in offered}
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            context = dataclasses.replace(
                plan.context,
                tools=(*plan.context.tools, *offered),
                tool_choice=client.first_turn() if round_ == 0 else ToolChoice(),
            )
            said: list[str] = []
            calls: list[ToolCall] = []
            async for delta in plan.llm.stream(history, context):
                if isinstance(delta, Usage):
                    self._usage = self._usage + delta
                elif isinstance(delta, ToolCall):
                    calls.append(delta)
                else:
                    self.stamps.setdefault("llm_first_token", self.clock())
                    said.append(delta.text)
                    for s in seg.push(delta.text):
                        await out.put(s)
            theirs = [c for c in calls if c.name in client_names]
            ours = [c for c in calls if c.name not in client_names]
            if not theirs and (not calls or plan.tools is None or round_ == MAX_TOOL_ROUNDS):
                if calls and plan.tools is not None:
                    log.warning(
                        "reply %s: the model still calls tools after %d rounds", self.response_id, round_
                    )
                return
            for s in seg.flush():
                await out.put(s)
            results = await self._run(ours, plan.tools) if ours else []
            if theirs:
                self._client_calls, self._ran = theirs, tuple(zip(ours, results, strict=True))
                return
            history.append(Message("assistant", "".join(said), tool_calls=tuple(calls)))
            history += [Message("tool", tool_result=r) for r in results]

    async def _run(self, calls: list[ToolCall], runner: ToolRunner | None) -> list[ToolResult]:
        """Run the companion's tools the model called (with effects: once the turn is the caller's)."""
        if runner is None:  # only client tools are offered: a call of another name is a mistake
            return [ToolResult(c.id, c.name, error_result(f"there is no tool {c.name!r}")) for c in calls]
        if any(c.name in SIDE_EFFECTS for c in calls):
            await self._released.wait()  # the caller may go on: no effects until the turn is theirs
        results = [await run_call(runner, call) for call in calls]
        self.stamps["tools_done"] = self.clock()
        self.tool_calls += [(c.name, r.result) for c, r in zip(calls, results, strict=True)]
        return results

    def _hand_out_calls(self) -> None:
        """The client's calls become function_call items, after the spoken message (if any)."""
        previous = self.item_id if self.spoke else self.previous_item_id
        for n, call in enumerate(self._client_calls):
            arguments = json.dumps(call.arguments, ensure_ascii=False)
            item = FunctionCall(new_id("item"), previous, call.id, call.name, arguments)
            self.client_calls.append(ClientCall(item, call, self._ran if n == 0 else ()))
            previous = item.item_id

    async def _speak(self, plan: ReplyPlan, sentences: asyncio.Queue[str | None]) -> None:
        """Speak each sentence as it comes. Every call shares the voice engine: the first sentence
        (the caller hears silence until it is spoken) goes before other replies' later sentences,
        whose caller is still hearing the sentence before (`pipeline.scheduler`)."""
        engine = EngineScheduler.of(plan.tts)
        while (text := await sentences.get()) is not None:
            index = self.audio.begin_sentence(text)
            resampler = Resampler(plan.tts.sample_rate, self.output_rate)
            async with engine.turn(Priority.NOW if index == 0 else Priority.SOON):
                async for pcm in plan.tts.synthesize(text, language=plan.language, speed=plan.speed):
                    self.stamps.setdefault("tts_first_audio", self.clock())
                    self._append(resampler.push(np.asarray(pcm, dtype=np.int16)), index)
            self._append(resampler.push(np.zeros(0, dtype=np.int16), last=True), index)
            self.audio.end_sentence(index)
            self.text = f"{self.text} {text}".strip()
        self._speaking_done = True
        self._wake.set()

    def _append(self, pcm: PCM, sentence: int) -> None:
        self.audio.append(pcm, sentence)
        if len(pcm):
            self._wake.set()

    async def _send(self) -> None:
        """The pacer: keep the client's buffer at about `lead_ms`, never more."""
        while True:
            chunks = self.audio.chunks
            if self.state is State.LIVE and self._sent < len(chunks):
                now = self.clock()
                ahead = (self._play_end - now) * 1000.0
                if ahead > self.lead_ms:
                    await self.sleep(min(ahead - self.lead_ms, 20.0) / 1000.0)
                    continue
                chunk = chunks[self._sent]
                sentence = self.audio.sentences[chunk.sentence]
                if not sentence.announced:
                    sentence.announced = True
                    self.emit(ReplyTextDelta(self.response_id, self.item_id, sentence.text + " "))
                self.stamps.setdefault("first_audio_sent", now)
                self.emit(ReplyAudio(self.response_id, self.item_id, chunk.pcm))
                self._sent += 1
                self.sent_ms += chunk.ms
                self._play_end = max(self._play_end, now) + chunk.ms / 1000.0
                continue
            if self._speaking_done and self._sent >= len(chunks) and self.state is State.LIVE:
                return
            self._wake.clear()
            await self._wake.wait()

    def _finish(self, status: ResponseStatus, heard_ms: float, details: dict[str, object] | None) -> None:
        self.text = self.text_until(heard_ms) if status == "cancelled" else self.text
        if self.state is State.SPECULATIVE or not self._started:
            # It never began on the wire (unreleased, or stopped before response.created).
            self.state = State.DROPPED
            return
        self.state, self.status = State.DONE, status
        self.emit_out(
            ResponseDone(
                self.response_id,
                self.item_id,
                status,
                self.text,
                details,
                self.timings(),
                self._usage,
                int(heard_ms),
                self.has_message,
                tuple(c.item for c in self.client_calls),
            )
        )

    def timings(self) -> dict[str, float]:
        """Milliseconds from the end of the caller's speech to each stage (see ResponseDone.timings)."""
        base = self.stamps.get("speech_end")
        if base is None:
            return {}
        out: dict[str, float] = {}
        for key in (
            "turn_end", "transcript", "tools_done", "llm_first_token", "tts_first_audio", "first_audio_sent"
        ):  # fmt: skip
            if key in self.stamps:
                out[f"{key}_ms"] = round((self.stamps[key] - base) * 1000.0, 1)
        out["speculative"] = 1.0 if self.speculative else 0.0
        return out
