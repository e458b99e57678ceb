"""Smart Turn v3.2: an audio end-of-turn model (BSD-2-Clause, by Daily) that judges from prosody alone
whether a speaker has finished, in 23 languages including Korean.

The int8 ONNX file ships inside the `pipecat-ai` wheel; we load it from that distribution's files
without importing pipecat (its import logs and pulls in its whole framework). Input: the last 8 s of
16 kHz audio, zero-padded at the front, normalised to zero mean and unit variance, as Whisper
log-mel features (80 bins, 800 frames): faster-whisper's own feature extractor computes exactly
these (checked against the reference recipe to 1e-5), so no second mel implementation lives here.
Output: the probability that the turn is complete. One inference costs about 60-95 ms on the
development CPU, so the core runs it once per pause (and again if the pause grows), off the loop.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import EngineUnavailable, FatalEngineError
from pipeline.engines.base import PCM
from pipeline.engines.threads import engine_executor

MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SAMPLE_RATE = 16000
WINDOW_S = 8


def bundled_model_path() -> Path:
    """The Smart Turn v3.2 CPU model inside the installed `pipecat-ai` distribution."""
    try:
        dist = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError:
        raise EngineUnavailable(
            "Smart Turn ships in the pipecat-ai package: pip install pipecat-ai"
        ) from None
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise EngineUnavailable(f"pipecat-ai is installed but has no {MODEL_FILE}; reinstall it")
    return path


class SmartTurn:
    """`EndOfTurnModel` over the Smart Turn ONNX model, on its own worker thread."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model_path: str | Path | None = None, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
            from faster_whisper.feature_extractor import FeatureExtractor
        except ImportError as e:  # both come with faster-whisper
            raise EngineUnavailable(f"Smart Turn needs onnxruntime and faster-whisper: {e}") from e
        path = Path(model_path) if model_path else bundled_model_path()
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options)
        except Exception as e:  # onnxruntime raises its own untyped errors for bad files
            raise EngineUnavailable(f"cannot load the Smart Turn model {path}: {e}") from e
        self._features = FeatureExtractor(feature_size=80, chunk_length=WINDOW_S)
        self._executor = engine_executor("smart-turn")

    def predict(self, audio: PCM) -> float:
        """Blocking: the probability that the speech in `audio` (16 kHz int16) is a finished turn."""
        samples = WINDOW_S * SAMPLE_RATE
        x = audio[-samples:].astype(np.float32) / 32768.0
        x = np.pad(x, (samples - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        features = self._features(x, padding=0)[None].astype(np.float32)
        try:
            out = self._session.run(None, {"input_features": features})
        except Exception as e:
            raise FatalEngineError(f"Smart Turn inference failed: {e}") from e
        return float(np.asarray(out[0]).reshape(-1)[0])

    async def probability(self, audio: PCM) -> float:
        """The probability that the turn is complete, computed on the model's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, audio)

    def warm_up(self) -> None:
        """One inference on silence (blocking), so the first caller's pause is not the first run."""
        self._executor.submit(self.predict, np.zeros(SAMPLE_RATE, dtype=np.int16)).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def load(settings: Any) -> SmartTurn:
    """Factory for the registry: `turn_model_path` (empty: the file in the pipecat-ai wheel)."""
    return SmartTurn(getattr(settings, "turn_model_path", None) or None)
