"""Voice activity per 20 ms frame: webrtcvad at 16 kHz behind an energy floor.

The Realtime session's `threshold` (0..1, higher = needs louder/clearer speech) maps onto webrtcvad's
aggressiveness 0..3. Frames quieter than the energy floor are never speech: webrtcvad alone fires on
faint hiss and room tone, which would keep a turn open forever. Smoothing over several frames is the
endpointer's job (`pipeline.endpointing`).
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from pipeline.audio import PCM

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


def aggressiveness(threshold: float) -> int:
    """Map the protocol's threshold (0..1, default 0.5) to webrtcvad's mode 0..3 (default 2)."""
    t = min(max(threshold, 0.0), 1.0)
    return min(3, int(t * 4))


class Vad:
    """Classify 20 ms frames of 16 kHz int16 audio as speech or not. Cheap (~5 us a frame)."""

    def __init__(self, threshold: float = 0.5, *, energy_floor_dbfs: float = -50.0) -> None:
        self._vad = webrtcvad.Vad(aggressiveness(threshold))
        # Mean square below which a frame is silence, whatever webrtcvad thinks.
        self._floor_ms = (32768.0 * 10 ** (energy_floor_dbfs / 20.0)) ** 2

    def set_threshold(self, threshold: float) -> None:
        self._vad.set_mode(aggressiveness(threshold))

    def is_speech(self, frame: PCM) -> bool:
        """`frame` must be exactly FRAME_SAMPLES samples."""
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {len(frame)}")
        x = frame.astype(np.float32)
        if float(np.dot(x, x)) / FRAME_SAMPLES < self._floor_ms:
            return False
        return bool(self._vad.is_speech(frame.astype("<i2").tobytes(), SAMPLE_RATE))


class FrameSplitter:
    """Cut a stream of arbitrary-length 16 kHz chunks into whole 20 ms frames (the rest waits)."""

    def __init__(self) -> None:
        self._rest = np.zeros(0, dtype=np.int16)

    def push(self, pcm: PCM) -> list[PCM]:
        buf = np.concatenate([self._rest, pcm]) if len(self._rest) else pcm
        n = len(buf) // FRAME_SAMPLES
        frames = [buf[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(n)]
        self._rest = buf[n * FRAME_SAMPLES :].copy()
        return frames

    def reset(self) -> None:
        self._rest = np.zeros(0, dtype=np.int16)
