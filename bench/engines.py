"""Instant engines for the calls-per-core benchmark: they answer at once, so only the call is measured.

They implement the real engine protocols (`pipeline.engines.base`) and are registered under the
name `bench-instant` by `register()`, which `python -m bench.serve` calls before building the app;
the server then picks them with `SILVERTALK_STT_ENGINE=bench-instant` (and LLM, TTS). Nothing in
the service itself knows about them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from pipeline.engines.base import PCM, ChatContext, LLMOutput, Message, TextDelta, Transcript

NAME = "bench-instant"
REPLY = "Okay."


class InstantSTT:
    """Hears the same short sentence in any audio, without decoding it."""

    sample_rate = 16000

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        return Transcript(text="I am fine, thank you.", language=language)


class InstantLLM:
    """Answers every turn with one short sentence, in one delta."""

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        yield TextDelta(REPLY)


class InstantTTS:
    """Half a second of a quiet 220 Hz tone per sentence, at 24 kHz (no resampling on the way out)."""

    sample_rate = 24000

    def __init__(self) -> None:
        t = np.arange(self.sample_rate // 2) / self.sample_rate
        self._pcm = (np.sin(2 * np.pi * 220 * t) * 3000).astype(np.int16)

    async def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        yield self._pcm


def load_stt(settings: Any) -> InstantSTT:
    return InstantSTT()


def load_llm(settings: Any) -> InstantLLM:
    return InstantLLM()


def load_tts(settings: Any) -> InstantTTS:
    return InstantTTS()


def register() -> None:
    """Add the instant engines to the engine registry's name -> factory dicts."""
    from pipeline.engines import registry

    registry.STT[NAME] = load_stt
    registry.LLM[NAME] = load_llm
    registry.TTS[NAME] = load_tts
