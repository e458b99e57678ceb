"""One spoken reply: LLM text -> sentences -> TTS -> paced audio chunks that can be held, resumed or cut.

Three stages run in a `TaskGroup` with a queue between the first two::

    think (LLM deltas -> SentenceSegmenter) --sentences--> speak (TTS -> resample -> 100 ms chunks)
                                                            send (pacer: chunks -> ReplyAudio events)

so the first sentence is synthesised while the LLM is still writing, and the next sentence is
synthesised while the previous one plays. Audio is sent at playback pace plus `lead_ms` (the client
buffers no more than that), which is what makes barge-in stop the voice at once and lets the server
know how much of the reply the caller has heard.

A *speculative* reply (started when the caller paused, before the turn was confirmed over) buffers
its events and sends no audio until `release()`; the conversation discards it if the caller goes on.
`hold()` pauses the audio (a possible barge-in), `resume()` re-sends from where the caller stopped
hearing, `cancel()` ends it as "cancelled" keeping only the heard text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline import EngineError
from pipeline.audio import PCM, Resampler
from pipeline.engines.base import ChatContext, LanguageModel, Message, TextDelta, TextToSpeech
from pipeline.events import (
    OutputEvent,
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
    ResponseStarted,
    ResponseStatus,
)
from pipeline.sentences import SentenceSegmenter

log = logging.getLogger(__name__)

#: What a reply needs before it can think: the history to send, or None for "nothing to answer".
Prepare = Callable[[], Awaitable[Sequence[Message] | None]]


@dataclass(slots=True)
class SpokenSentence:
    """A sentence and where its audio lies in the reply's audio timeline (ms)."""

    text: str
    start_ms: float
    end_ms: float | None = None
    announced: bool = False


@dataclass(slots=True)
class _Chunk:
    pcm: PCM
    ms: float
    sentence: int


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
    sentences: list[SpokenSentence] = field(default_factory=list)
    status: str | None = None
    held: bool = False
    released: bool = False
    text: str = ""
    task: asyncio.Task[None] | None = None
    #: The user turn this answers (None for response.create on text items and spoken prompts).
    user_item_id: str | None = None
    on_done: Callable[[Reply], None] | None = None
    _buffer: list[OutputEvent] = field(default_factory=list)
    _started: list[OutputEvent] = field(default_factory=list)
    _chunks: list[_Chunk] = field(default_factory=list)
    _total_ms: float = 0.0
    _sent: int = 0
    sent_ms: float = 0.0
    _play_end: float = 0.0
    _speaking_done: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _failed: str | None = None
    _out_tokens: int = 0
    _in_tokens: int = 0

    def __post_init__(self) -> None:
        self.released = not self.speculative

    # --- control (called by the conversation, synchronously) -----------------------------------

    def emit(self, event: OutputEvent) -> None:
        if isinstance(event, ResponseStarted):
            self._started.append(event)
        if self.released:
            self.emit_out(event)
        else:
            self._buffer.append(event)

    def release(self) -> None:
        """The turn is confirmed: send what was buffered, and let the audio flow."""
        self.released = True
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            self.emit_out(event)
        self._wake.set()

    def hold(self) -> None:
        """Stop sending audio now (the caller may be interrupting); generation goes on."""
        if not self.held:
            self.sent_ms = self.played_ms()
            self._sent = self._chunk_index(self.sent_ms)
            self.held = True

    def resume(self, from_ms: float | None = None) -> None:
        """It was not an interruption: go on from where the caller stopped hearing (or `from_ms`)."""
        if from_ms is not None:
            self.sent_ms = min(from_ms, self.sent_ms)
            self._sent = self._chunk_index(self.sent_ms)
        self.held = False
        self._play_end = self.clock()
        self._wake.set()

    def cancel(self, reason: str) -> None:
        """End the reply as cancelled, at once: response.done goes out now, the tasks stop soon."""
        if self.status is not None:
            return
        heard = self.played_ms()
        self.hold()
        self._finish("cancelled", heard, {"type": "cancelled", "reason": reason})
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def discard(self) -> None:
        """Drop a speculative reply silently: nothing of it was ever sent."""
        self.status = "discarded"
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # --- what was heard ------------------------------------------------------------------------

    def played_ms(self) -> float:
        """Audio the caller has heard by now: sent, minus what is still in the client's buffer."""
        if self.held:
            return self.sent_ms
        buffered = max(0.0, self._play_end - self.clock()) * 1000.0
        return max(0.0, self.sent_ms - buffered)

    def text_until(self, ms: float) -> str:
        """The reply's text up to `ms` of its audio (a partly heard sentence is cut proportionally)."""
        parts: list[str] = []
        for s in self.sentences:
            end = s.end_ms if s.end_ms is not None else self._total_ms
            if end <= ms:
                parts.append(s.text)
                continue
            if s.start_ms < ms and end > s.start_ms:
                n = int(len(s.text) * (ms - s.start_ms) / (end - s.start_ms))
                cut = s.text[:n]
                if n < len(s.text) and not s.text[n].isspace() and " " in cut:
                    cut = cut[: cut.rindex(" ")]
                if cut.strip():
                    parts.append(cut.strip())
            break
        return " ".join(parts)

    @property
    def audio_ms(self) -> float:
        return self._total_ms

    # --- the work ------------------------------------------------------------------------------

    async def run(self, prepare: Prepare, plan: ReplyPlan) -> None:
        """Prepare (await the transcript), then think, speak and send. Never raises but CancelledError."""
        try:
            history = await prepare()
            if history is None:
                self.status = "empty"
                return
            self.emit(ResponseStarted(self.response_id, self.item_id, self.previous_item_id))
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._think(history, plan, sentences))
                tg.create_task(self._speak(plan, sentences))
                tg.create_task(self._send())
            status: ResponseStatus = "failed" if self._failed else "completed"
            details: dict[str, object] = {
                "type": "failed",
                "error": {"type": "server_error", "message": self._failed},
            }
            self._finish(status, self._total_ms, details if self._failed else None)
        except asyncio.CancelledError:
            if self.status is None:
                self._finish(
                    "cancelled", self.played_ms(), {"type": "cancelled", "reason": "client_cancelled"}
                )
            raise
        except Exception as e:  # a TTS failure: the call goes on, this reply fails
            log.exception("reply %s failed", self.response_id)
            if self.status is None:
                error: dict[str, object] = {
                    "type": "failed",
                    "error": {"type": "server_error", "message": str(e)},
                }
                self._finish("failed", self.played_ms(), error)
        finally:
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
                async for delta in plan.llm.stream(history, plan.context):
                    if not isinstance(delta, TextDelta):
                        continue  # tool calls: the tools arrive in a later feature
                    self.stamps.setdefault("llm_first_token", self.clock())
                    self._out_tokens += max(1, len(delta.text) // 4)
                    for s in seg.push(delta.text):
                        await out.put(s)
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

    async def _speak(self, plan: ReplyPlan, sentences: asyncio.Queue[str | None]) -> None:
        max_chunk = self.output_rate // 10  # 100 ms
        while (text := await sentences.get()) is not None:
            index = len(self.sentences)
            sentence = SpokenSentence(text, self._total_ms)
            self.sentences.append(sentence)
            resampler = Resampler(plan.tts.sample_rate, self.output_rate)
            async for pcm in plan.tts.synthesize(text, language=plan.language, speed=plan.speed):
                self.stamps.setdefault("tts_first_audio", self.clock())
                self._append(resampler.push(np.asarray(pcm, dtype=np.int16)), index, max_chunk)
            self._append(resampler.push(np.zeros(0, dtype=np.int16), last=True), index, max_chunk)
            sentence.end_ms = self._total_ms
            self.text = f"{self.text} {text}".strip()
        self._speaking_done = True
        self._wake.set()

    def _append(self, pcm: PCM, sentence: int, max_chunk: int) -> None:
        for i in range(0, len(pcm), max_chunk):
            piece = pcm[i : i + max_chunk]
            ms = len(piece) * 1000.0 / self.output_rate
            self._chunks.append(_Chunk(piece, ms, sentence))
            self._total_ms += ms
        if len(pcm):
            self._wake.set()

    async def _send(self) -> None:
        """The pacer: keep the client's buffer at about `lead_ms`, never more."""
        while True:
            if self.released and not self.held and self._sent < len(self._chunks):
                now = self.clock()
                ahead = (self._play_end - now) * 1000.0
                if ahead > self.lead_ms:
                    await self.sleep(min(ahead - self.lead_ms, 20.0) / 1000.0)
                    continue
                chunk = self._chunks[self._sent]
                sentence = self.sentences[chunk.sentence]
                if not sentence.announced:
                    sentence.announced = True
                    self.emit(ReplyTextDelta(self.response_id, self.item_id, sentence.text + " "))
                self.stamps.setdefault("first_audio_sent", now)
                self.emit(ReplyAudio(self.response_id, self.item_id, chunk.pcm))
                self._sent += 1
                self.sent_ms += chunk.ms
                self._play_end = max(self._play_end, now) + chunk.ms / 1000.0
                continue
            if self._speaking_done and self._sent >= len(self._chunks) and self.released and not self.held:
                return
            self._wake.clear()
            await self._wake.wait()

    def _chunk_index(self, ms: float) -> int:
        total = 0.0
        for i, c in enumerate(self._chunks):
            if total + c.ms > ms + 0.5:
                return i
            total += c.ms
        return len(self._chunks)

    def _finish(self, status: ResponseStatus, heard_ms: float, details: dict[str, object] | None) -> None:
        self.status = status
        self.text = self.text_until(heard_ms) if status == "cancelled" else self.text
        in_tokens = self._in_tokens
        usage = {
            "input_tokens": in_tokens,
            "output_tokens": self._out_tokens,
            "total_tokens": in_tokens + self._out_tokens,
        }
        self.emit_out_final(
            ResponseDone(
                self.response_id,
                self.item_id,
                status,
                self.text,
                details,
                self.timings(),
                usage,
                int(heard_ms),
            )
        )

    def emit_out_final(self, event: OutputEvent) -> None:
        # A reply that never began (unreleased, or cancelled before response.created) ends without a trace.
        if self.released and any(isinstance(e, ResponseStarted) for e in self._started):
            self.emit_out(event)

    def timings(self) -> dict[str, float]:
        """Milliseconds from the end of the caller's speech to each stage (see ResponseDone.timings)."""
        base = self.stamps.get("speech_end")
        if base is None:
            return {}
        out: dict[str, float] = {}
        for key in ("turn_end", "transcript", "llm_first_token", "tts_first_audio", "first_audio_sent"):
            if key in self.stamps:
                out[f"{key}_ms"] = round((self.stamps[key] - base) * 1000.0, 1)
        out["speculative"] = 1.0 if self.speculative else 0.0
        return out
