"""The text-to-speech deployment: the project's own TTS engines, streamed as 24 kHz pcm16 as they speak.

A replica loads the voices named in `inference_tts_voices` through `pipeline.engines.registry`
(Piper, espeak-ng, XTTS). A request names a voice by its engine name, or `auto`, which picks the
per-language voice the gateway would (`tts_voice_en`, `tts_voice_ko`, espeak for the rest).
Every chunk an engine yields is resampled to 24 kHz (the OpenAI `pcm` format) and sent on at
once, so the first sentence plays while the next is still being made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from ray import serve

from pipeline.audio import Resampler
from pipeline.engines import registry
from pipeline.engines.base import TextToSpeech
from server.settings import Settings

OUTPUT_RATE = 24000


class UnknownVoice(ValueError):
    """The request named a voice this tier does not serve."""


@serve.deployment(name="TTS")
class TTSDeployment:
    """A replica holding the configured voices."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.voices: dict[str, TextToSpeech] = {}
        for name in settings.inference_tts_voices:
            factory = registry.TTS.get(name)
            if factory is None:
                raise ValueError(f"inference_tts_voices names an unknown engine {name!r}")
            self.voices[name] = factory(settings)

    def voice_names(self) -> list[str]:
        """The voices this replica serves (besides `auto`)."""
        return sorted(self.voices)

    def pick(self, voice: str, language: str) -> TextToSpeech:
        """The engine for `voice` ("auto" chooses by language). Raises UnknownVoice."""
        name = voice.lower()
        if name == "auto":
            wanted = registry.tts_names(self.settings)
            name = wanted.get(language.split("-")[0], wanted["*"])
        engine = self.voices.get(name)
        if engine is None:
            names = ", ".join(["auto", *self.voice_names()])
            raise UnknownVoice(f"unknown voice {voice!r}: choose one of {names}")
        return engine

    def check(self, voice: str, language: str) -> None:
        """Raises UnknownVoice before a stream starts, so the ingress can answer 400 rather than 200."""
        self.pick(voice, language)

    async def synthesize(self, text: str, voice: str, language: str, speed: float) -> AsyncIterator[bytes]:
        """Yield 24 kHz mono pcm16 (little-endian bytes) chunk by chunk as the engine makes it."""
        engine = self.pick(voice, language)
        resampler = Resampler(engine.sample_rate, OUTPUT_RATE)
        async for pcm in engine.synthesize(text, language=language, speed=speed):
            out = resampler.push(np.asarray(pcm, dtype=np.int16))
            if len(out):
                yield out.astype("<i2").tobytes()
        tail = resampler.push(np.zeros(0, dtype=np.int16), last=True)
        if len(tail):
            yield tail.astype("<i2").tobytes()
