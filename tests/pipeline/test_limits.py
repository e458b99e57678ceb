"""Bounded audio per call, bounded decodes, fair turns on the shared engine, nothing kept after hang-up
(issue 10, defect 8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.conversation import CallConfig, Conversation
from pipeline.engines.base import PCM, ChatContext, SpeechToText, Transcript
from pipeline.events import (
    ErrorEvent,
    InputCommitted,
    OutputEvent,
    ResponseDone,
    ResponseStarted,
    TranscriptFinal,
)
from pipeline.scheduler import EngineScheduler, Priority
from pipeline.stt_stream import DECODE_WINDOW_S, windows
from tests.pipeline.callkit import RATE, Call, Engines, FakeLLM, FakeTTS, silence, speech


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


async def test_uncommitted_audio_is_capped_with_one_error(call: Call) -> None:
    """VAD off: past max_input_audio_s the excess is dropped, said once; what was buffered is committed."""
    call.conv.configure(turn_detection=False, max_input_audio_s=1.0)
    await call.feed(speech(2500))
    errors = call.of(ErrorEvent)
    assert [e.code for e in errors] == ["input_audio_buffer_full"] and "1 s" in errors[0].message
    call.conv.commit()
    await call.until(TranscriptFinal)
    assert call.engines.stt.calls == [1.0]  # the first second, whole
    await call.feed(speech(1500))
    assert len(call.of(ErrorEvent)) == 2  # a new buffer, full again: said again


async def test_a_turn_that_never_pauses_is_committed_at_the_limit(call: Call) -> None:
    """VAD on: a turn reaching max_input_audio_s is committed there (with an error); speech goes on
    in a new turn."""
    call.conv.configure(max_input_audio_s=2.0)
    await call.feed(speech(3000))
    assert [e.code for e in call.of(ErrorEvent)] == ["input_audio_buffer_full"]
    assert len(call.of(InputCommitted)) == 1
    await call.feed(silence(1500))
    await call.until(ResponseDone, 2)
    assert len(call.of(InputCommitted)) == 2 and max(call.engines.stt.calls) <= 2.4


async def test_a_huge_prefix_padding_keeps_seconds_not_minutes(call: Call) -> None:
    """prefix_padding_ms of 1e9 keeps at most PREFIX_MAX_MS of audio before a turn."""
    call.conv.configure(prefix_padding_ms=10**9)
    await call.feed(silence(8000))
    assert len(call.conv._prefix) * 20 <= 5200


async def test_hang_up_lets_go_of_everything(call: Call) -> None:
    """After aclose no task runs and no audio is held: input buffer, transcriber, prefix, reply audio."""
    await call.feed(speech(900))
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    call.conv.configure(turn_detection=False)
    await call.feed(speech(800))
    await call.conv.aclose()
    conv = call.conv
    assert not conv.core.tasks and conv._input == [] and len(conv._prefix) == 0
    assert conv.stt.duration_s == 0.0 and conv.floor.reply is None
    assert all(not r.audio.chunks for r in conv.floor.replies.values())


def test_long_audio_is_cut_in_windows_between_words() -> None:
    """Five minutes become windows of at most DECODE_WINDOW_S, cut in the quiet, nothing lost."""
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(300 * RATE) * 3000).astype(np.int16)
    quiet = int(26.0 * RATE)
    audio[quiet : quiet + RATE // 5] = 0  # a pause 26 s in
    pieces = windows(audio, RATE)
    assert all(len(p) <= DECODE_WINDOW_S * RATE for p in pieces)
    assert np.array_equal(np.concatenate(pieces), audio)
    assert quiet <= len(pieces[0]) <= quiet + RATE // 5


async def test_finals_go_before_partials_and_a_cancelled_waiter_passes_its_turn() -> None:
    """With the engine busy, a later final is served before an earlier partial; a cancelled waiter
    never loses the turn."""
    scheduler = EngineScheduler(concurrency=1)
    order: list[str] = []
    release = asyncio.Event()

    async def decode(name: str, priority: Priority) -> None:
        async with scheduler.turn(priority):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(decode("first", Priority.NOW))
    await asyncio.sleep(0)
    partial = asyncio.create_task(decode("partial", Priority.SOON))
    doomed = asyncio.create_task(decode("doomed", Priority.NOW))
    final = asyncio.create_task(decode("final", Priority.NOW))
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await asyncio.gather(first, partial, final)
    assert order == ["first", "final", "partial"]


class OneVoice(FakeTTS):
    """One sentence at a time, in the order asked, as Piper's private thread speaks them; each
    sentence is held until the test lets it go (`release`)."""

    def __init__(self) -> None:
        super().__init__()
        self._one = asyncio.Lock()
        self.holds: list[asyncio.Event] = []
        #: The sentences in the order the voice began them.
        self.began: list[str] = []

    async def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        async with self._one:
            self.began.append(text)
            hold = asyncio.Event()
            self.holds.append(hold)
            await hold.wait()
            async for pcm in super().synthesize(text, language=language, speed=speed):
                yield pcm

    async def release(self, calls: list[Call]) -> None:
        """Let the sentence being spoken finish, and everyone react."""
        next(h for h in self.holds if not h.is_set()).set()
        for c in calls:
            await c.settle()


async def test_a_replys_first_sentence_goes_before_other_replies_later_ones() -> None:
    """Calls share one voice. While it speaks, a second sentence (its caller still hears the first)
    and then another caller's first sentence (that caller hears silence) wait: the first sentence
    is spoken first."""
    voice = OneVoice()

    def first(name: str) -> str:
        return f"{name} speaks first here."

    a, b, c = Call(), Call(), Call()
    for call, name in ((a, "Alpha"), (b, "Bravo"), (c, "Charlie")):
        call.engines.tts = voice
        call.engines.llm = FakeLLM(f"{name} speaks first here. {name} speaks second here.")
    try:
        for call in (a, c):
            await call.feed(speech(900))
            await call.feed(silence(1000))
        await a.until(ResponseStarted)
        await c.until(ResponseStarted)
        assert voice.began == [first("Alpha")]  # Charlie's first sentence waits
        await voice.release([a, b, c])
        assert voice.began == [first("Alpha"), first("Charlie")]  # and Alpha's second waits now
        await b.feed(speech(900))
        await b.feed(silence(1000))
        await b.until(ResponseStarted)
        for _ in range(4):
            await voice.release([a, b, c])
        assert voice.began[:4] == [
            first("Alpha"),
            first("Charlie"),
            first("Bravo"),
            "Alpha speaks second here.",
        ]
    finally:
        for h in voice.holds:
            h.set()
        for call in (a, b, c):
            await call.close()


class SlowSTT(SpeechToText):
    """One decode at a time on a private thread, 20 ms per second of audio (Whisper's shape)."""

    sample_rate = RATE

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1)

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        seconds = len(audio) / RATE
        await asyncio.get_running_loop().run_in_executor(self._thread, time.sleep, 0.02 * seconds)
        return Transcript(f"{seconds:.0f} seconds", language)


async def final_after(conv: Conversation, start: float) -> float:
    while True:
        event: OutputEvent = await conv.out.get()
        if isinstance(event, TranscriptFinal):
            return time.monotonic() - start


async def test_another_calls_transcript_is_not_held_behind_a_long_decode() -> None:
    """One caller commits five minutes of audio; another's one-second turn is transcribed long before it."""
    stt = SlowSTT()
    engines = Engines()
    engines.stt = stt  # type: ignore[assignment]
    config = dict(language="en", input_rate=RATE, turn_detection=False, create_response=False)
    long = Conversation(engines, ChatContext("", "en"), CallConfig(**config, max_input_audio_s=300))
    short = Conversation(engines, ChatContext("", "en"), CallConfig(**config))  # type: ignore[arg-type]
    try:
        long.push_audio(speech(300_000))
        short.push_audio(speech(1000))
        t0 = time.monotonic()
        long.commit()
        await asyncio.sleep(0.05)  # the long decode has the engine
        short.commit()
        short_s, long_s = await asyncio.gather(final_after(short, t0), final_after(long, t0))
        assert long_s >= 5.5  # 300 s at 20 ms/s: the long one really was long
        assert short_s < 1.5, f"the one-second turn waited {short_s:.1f} s"
    finally:
        await long.aclose()
        await short.aclose()
        stt._thread.shutdown()
