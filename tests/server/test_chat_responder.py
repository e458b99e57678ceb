"""A voice message shares the process's Whisper and voice with live calls, and waits behind them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from pipeline.engines.base import PCM, Transcript
from pipeline.scheduler import EngineScheduler, Priority
from server.chat.responder import _speak, _transcribe
from tests.pipeline.callkit import FakeTTS


async def test_a_messages_reply_waits_behind_a_callers_first_sentence() -> None:
    """While a live call's sentence is being spoken, a voice message's reply waits for the voice;
    a caller's first sentence that asks meanwhile (that caller hears silence) goes before it."""
    voice = FakeTTS()
    engines = SimpleNamespace(tts_for=lambda language: voice)
    scheduler = EngineScheduler.of(voice)

    async def call_says(text: str) -> None:
        async with scheduler.turn(Priority.NOW):
            async for _ in voice.synthesize(text, language="en"):
                pass

    async with scheduler.turn(Priority.NOW):  # a call's first sentence is being spoken
        message = asyncio.create_task(_speak(engines, "It still moves people. I remember it.", "en", 1.0))
        await asyncio.sleep(0.01)
        assert voice.spoken == []  # the message waits for the voice
        caller = asyncio.create_task(call_says("Hello there."))
        await asyncio.sleep(0.01)
    wav = await message
    await caller
    assert voice.spoken == ["Hello there.", "It still moves people.", "I remember it."]
    assert wav[:4] == b"RIFF"


class Ears:
    """A speech-to-text engine that notes who it heard, in order."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        self.heard.append(language)
        return Transcript(text="", language=language)


async def test_a_messages_transcription_waits_behind_a_callers_final_decode() -> None:
    """The same for the recording's transcription on the shared Whisper: a call's final decode that
    asks while another decode runs goes before the message."""
    ears = Ears()
    scheduler = EngineScheduler.of(ears)

    async def final_decode() -> None:
        async with scheduler.turn(Priority.NOW):
            await ears.transcribe(np.zeros(1600, np.int16), language="en")

    async with scheduler.turn(Priority.NOW):
        message = asyncio.create_task(_transcribe(SimpleNamespace(stt=ears), np.zeros(1600, np.int16), "ko"))
        await asyncio.sleep(0.01)
        assert ears.heard == []
        call = asyncio.create_task(final_decode())
        await asyncio.sleep(0.01)
    await asyncio.gather(message, call)
    assert ears.heard == ["en", "ko"]
