"""Text to speech with espeak-ng: Korean and every other language, on CPU, in milliseconds.

Robotic but real: a 6 s Korean reply takes about 6 ms here. The library and its data come from
the `espeakng-loader` wheel and are driven through ctypes in synchronous mode (a callback
collects the samples, 22050 Hz). When the wheel is missing, the Debian `espeak-ng` program is
used instead. espeak-ng keeps global state (one voice, one callback per process), so every
synthesis in the process holds `_LOCK` and runs on the engine's single thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import shutil
import subprocess
import threading
import wave
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from pipeline import EngineUnavailable, FatalEngineError
from pipeline.engines.base import PCM
from pipeline.engines.threads import engine_executor

_LOCK = threading.Lock()
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

#: Our language codes -> espeak-ng voice names.
VOICES = {"ko": "ko", "en": "en-us", "ja": "ja", "zh": "cmn"}


def voice_for(language: str) -> str:
    return VOICES.get(language.lower().split("-")[0], language.lower())


class _Library:
    """The process's one espeak-ng (loaded from espeakng-loader), initialised once."""

    instance: _Library | None = None

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 200, espeakng_loader.get_data_path().encode(), 0
        )
        if rate <= 0:
            raise EngineUnavailable("espeak-ng failed to initialise its data (espeakng-loader)")
        self.lib, self.sample_rate = lib, int(rate)
        self._buffer: list[PCM] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: espeak calls it later
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n: int, _events: Any) -> int:
        if wav and n > 0:
            self._buffer.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.int16))
        return 0  # 0 = go on

    def synth(self, text: str, voice: str, wpm: int) -> PCM:
        with _LOCK:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise FatalEngineError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
            data = text.encode()
            self._buffer = []
            self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            audio, self._buffer = self._buffer, []
        return np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)

    @classmethod
    def get(cls) -> _Library:
        with _LOCK:
            if cls.instance is None:
                cls.instance = cls()
            return cls.instance


def _synth_with_program(program: str, text: str, voice: str, wpm: int) -> tuple[PCM, int]:
    """The Debian espeak-ng program as a fallback: WAV on stdout."""
    out = subprocess.run(
        [program, "-v", voice, "-s", str(wpm), "--stdout", text], capture_output=True, check=False, timeout=30
    )
    if out.returncode != 0:
        raise FatalEngineError(f"espeak-ng failed: {out.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(out.stdout)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16), w.getframerate()


class EspeakTTS:
    """A `TextToSpeech` for any language espeak-ng knows (Korean by default in Silvertalk)."""

    def __init__(self, *, words_per_minute: int = 150) -> None:
        """Load espeak-ng (the wheel, else the Debian program). Raises EngineUnavailable.

        `words_per_minute` is the pace at speed 1.0: a little slower than espeak's 175, for
        older listeners.
        """
        self.words_per_minute = words_per_minute
        self._program: str | None = None
        try:
            self._lib: _Library | None = _Library.get()
            self.sample_rate = self._lib.sample_rate
        except (ImportError, OSError) as e:
            self._lib = None
            self._program = shutil.which("espeak-ng")
            if self._program is None:
                raise EngineUnavailable(
                    "espeak-ng is not available: pip install espeakng-loader (or apt-get install espeak-ng)"
                ) from e
            self.sample_rate = 22050
        self._executor = engine_executor("espeak")

    def _render(self, text: str, language: str, speed: float) -> PCM:
        wpm = max(80, min(450, round(self.words_per_minute * speed)))
        if self._lib is not None:
            return self._lib.synth(text, voice_for(language), wpm)
        assert self._program is not None
        audio, rate = _synth_with_program(self._program, text, voice_for(language), wpm)
        if rate != self.sample_rate:
            from pipeline.audio import resample

            audio = resample(audio, rate, self.sample_rate)
        return audio

    async def synthesize(self, text: str, *, language: str = "ko", speed: float = 1.0) -> AsyncIterator[PCM]:
        """Yield the audio of `text` (espeak renders a sentence in milliseconds: one chunk).

        Raises FatalEngineError for a language espeak-ng has no voice for.
        """
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._executor, self._render, text, language, speed)
        if len(audio):
            yield audio

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def load(settings: Any) -> EspeakTTS:
    """Factory for the registry."""
    return EspeakTTS()
