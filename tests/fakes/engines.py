"""Speech engines that fail on demand, for fault injection. They implement the real protocols.

Register them in the engine registry under a test name and pick them by settings, the way a
deployment picks an engine::

    stt, tts = FlakySTT("I had a nice walk today."), FlakyTTS()
    with flaky_engines(stt, tts):   # registry names "flaky-stt" / "flaky-tts"
        settings = make_settings(..., stt_engine="flaky-stt", tts_engine="flaky-tts")
        ...
        stt.fail_next(RuntimeError("decoder crashed"))   # the next decode raises it
        tts.fail_next(RetryableEngineError("voice down"), after_chunks=1)  # mid-sentence

`FlakySTT` hears its fixed sentence in any audio; `FlakyTTS` speaks every sentence as a quiet
tone of `ms_per_char` per character. Both count what they were asked to do.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from pipeline.engines import registry
from pipeline.engines.base import PCM, SpeechToText, TextToSpeech, Transcript


@dataclass
class _Failures:
    """A thread-safe queue of (exception, after) to raise, one per call."""

    queue: list[tuple[BaseException, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, exc: BaseException, after: int = 0) -> None:
        with self.lock:
            self.queue.append((exc, after))

    def pop(self) -> tuple[BaseException, int] | None:
        with self.lock:
            return self.queue.pop(0) if self.queue else None

    def clear(self) -> None:
        with self.lock:
            self.queue.clear()


class FlakySTT(SpeechToText):
    """Hears `text` in any audio of at least 100 ms (nothing in less), after `delay_s`."""

    sample_rate = 16000

    def __init__(self, text: str, delay_s: float = 0.05) -> None:
        self.text, self.delay_s = text, delay_s
        self.failures = _Failures()
        self.calls = 0

    def fail_next(self, exc: BaseException) -> None:
        """The next decode raises `exc` (queue several for several decodes)."""
        self.failures.push(exc)

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        failure = self.failures.pop()
        if failure is not None:
            raise failure[0]
        text = self.text if len(audio) >= self.sample_rate // 10 else ""
        return Transcript(text=text, language=language)


class FlakyTTS(TextToSpeech):
    """Speaks a sentence as a 220 Hz tone in two chunks; `fail_next` makes one sentence fail."""

    sample_rate = 24000

    def __init__(self, ms_per_char: float = 4.0) -> None:
        self.ms_per_char = ms_per_char
        self.failures = _Failures()
        self.sentences: list[str] = []

    def fail_next(self, exc: BaseException, after_chunks: int = 0) -> None:
        """The next sentence raises `exc` after `after_chunks` chunks of its audio."""
        self.failures.push(exc, after_chunks)

    async def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        self.sentences.append(text)
        failure = self.failures.pop()
        n = max(1, int(len(text) * self.ms_per_char * self.sample_rate / 1000))
        tone = (np.sin(2 * np.pi * 220 * np.arange(n) / self.sample_rate) * 2000).astype(np.int16)
        for i, chunk in enumerate(np.array_split(tone, 2)):
            if failure is not None and i == failure[1]:
                raise failure[0]
            await asyncio.sleep(0)
            yield chunk
        if failure is not None:
            raise failure[0]


@contextmanager
def flaky_engines(stt: FlakySTT, tts: FlakyTTS) -> Iterator[None]:
    """Register `stt` and `tts` as the engines "flaky-stt" and "flaky-tts" for the duration."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.STT, "flaky-stt", lambda settings: stt)
        mp.setitem(registry.TTS, "flaky-tts", lambda settings: tts)
        yield
