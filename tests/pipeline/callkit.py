"""Fakes of the external models for the conversation core tests, and a `Call` that drives the core.

The engines implement the engine Protocols (they are what Whisper, the LLM and TTS would be); the
core under test is the real code. Time is a fake clock advanced 20 ms per frame fed, so the tests
run faster than real time and deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from pipeline import RetryableEngineError
from pipeline.conversation import CallConfig, Conversation
from pipeline.engines.base import (
    PCM,
    ChatContext,
    EndOfTurnModel,
    LanguageModel,
    LLMOutput,
    Message,
    SpeechToText,
    TextDelta,
    TextToSpeech,
    Transcript,
    Usage,
)
from pipeline.events import OutputEvent

RATE = 16000


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Sleep on the fake clock: wake once the feeding has moved time past the deadline."""
        deadline = self.t + seconds
        await asyncio.sleep(0)
        while self.t < deadline:  # noqa: ASYNC110 - the fake clock has no event to wait on
            await asyncio.sleep(0)


def voiced_seconds(audio: PCM) -> float:
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    return float((np.abs(frames).max(axis=1) > 2000).sum() * 0.02)


def words(audio: PCM) -> str:
    n = round(voiced_seconds(audio) / 0.3)
    return (" ".join(["hello"] * n).capitalize() + ".") if n else ""


class FakeSTT(SpeechToText):
    """Whisper stand-in: "Hello hello." with one word per 0.3 s of loud audio, or what `text_fn` says.

    While `gate` is set and not yet open, every decode waits for it (a slow model); `error`, when
    set, is raised instead of a transcript (a failing model).
    """

    sample_rate = RATE

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.text_fn: Callable[[PCM], str] = words
        self.gate: asyncio.Event | None = None
        self.error: Exception | None = None
        #: How sure the "decoder" is of the ending (`Transcript.end_prob`); None: it does not say.
        self.end_prob: float | None = None
        #: Other readings of the last word it weighed (`Transcript.end_alternatives`).
        self.end_alternatives: tuple[tuple[str, float], ...] = ()

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        self.calls.append(len(audio) / RATE)
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        text = self.text_fn(audio)
        if not text:
            return Transcript(text, language)
        return Transcript(text, language, end_prob=self.end_prob, end_alternatives=self.end_alternatives)


class FakeLLM(LanguageModel):
    """Streams a fixed reply in small deltas, then `usage` if set; fails after `fail_after` deltas if set."""

    def __init__(self, reply: str = "Nice to hear you. The weather is lovely today. Shall we walk?") -> None:
        self.reply = reply
        self.histories: list[list[Message]] = []
        self.fail_after: int | None = None
        self.usage: Usage | None = None

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        self.histories.append(list(history))
        for i in range(0, len(self.reply), 4):
            if self.fail_after is not None and i // 4 >= self.fail_after:
                raise RetryableEngineError("503 upstream unavailable")
            await asyncio.sleep(0)
            yield TextDelta(self.reply[i : i + 4])
        if self.usage is not None:
            yield self.usage


class FakeTTS(TextToSpeech):
    """A 200 Hz tone, 40 ms per character, at 16 kHz (resampled by the core to the output rate).

    `error`, when set, is raised after the first chunk of the next sentence (a voice that breaks).
    """

    sample_rate = RATE

    def __init__(self) -> None:
        self.spoken: list[str] = []
        self.error: Exception | None = None

    async def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        self.spoken.append(text)
        n = int(len(text) * 0.04 * RATE)
        tone = (np.sin(np.arange(n) * 2 * np.pi * 200 / RATE) * 3000).astype(np.int16)
        yield tone[: n // 2]
        if self.error is not None:
            raise self.error
        yield tone[n // 2 :]


class FakeTurnModel(EndOfTurnModel):
    """Smart Turn stand-in: answers `p` (finished or not) for whatever it hears; counts the calls."""

    sample_rate = RATE

    def __init__(self, p: float = 0.9) -> None:
        self.p = p
        self.heard_s: list[float] = []

    async def probability(self, audio: PCM) -> float:
        self.heard_s.append(len(audio) / RATE)
        await asyncio.sleep(0)
        return self.p


class Engines:
    def __init__(self) -> None:
        self.stt, self.llm, self.tts = FakeSTT(), FakeLLM(), FakeTTS()
        #: No audio end-of-turn model unless a test sets one.
        self.turn: FakeTurnModel | None = None

    def tts_for(self, language: str) -> FakeTTS:
        return self.tts


def speech(ms: int) -> PCM:
    t = np.arange(ms * RATE // 1000) / RATE
    x = ((t * 140) % 1.0 - 0.5) * 2 * 0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (x * 32767).astype(np.int16)


def silence(ms: int) -> PCM:
    return np.zeros(ms * RATE // 1000, dtype=np.int16)


class Call:
    """A conversation plus its fake clock and everything it emitted."""

    def __init__(self, **config: object) -> None:
        self.engines = Engines()
        self.clock = Clock()
        cfg = CallConfig(
            language="en", input_rate=RATE, output_rate=24000, lead_ms=1e9, apology="Sorry, say again?"
        )
        for k, v in config.items():
            setattr(cfg, k, v)
        self.conv = Conversation(
            self.engines, ChatContext("be kind", "en"), cfg, clock=self.clock, sleep=self.clock.sleep
        )
        self.events: list[OutputEvent] = []

    async def settle(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            await asyncio.sleep(0)
        while not self.conv.out.empty():
            self.events.append(self.conv.out.get_nowait())

    async def feed(self, pcm: PCM) -> None:
        for i in range(0, len(pcm), 320):
            self.conv.push_audio(pcm[i : i + 320])
            self.clock.t += 0.02
            await self.settle(4)

    async def until(self, kind: type, n: int = 1, limit: int = 2000) -> None:
        for _ in range(limit):
            if sum(isinstance(e, kind) for e in self.events) >= n:
                return
            self.clock.t += 0.01
            await asyncio.sleep(0.001)
            await self.settle(3)
        raise AssertionError(f"no {kind.__name__} in {[type(e).__name__ for e in self.events]}")

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    async def close(self) -> None:
        await self.conv.aclose()
