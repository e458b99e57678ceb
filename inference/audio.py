"""Audio in and out of the HTTP API: uploads decoded to 16 kHz mono, and a WAV header for streams.

WAV uploads (what our own remote engine sends) are read with the standard library; anything else
(FLAC, MP3, Ogg, M4A, WebM ...) goes through PyAV, which faster-whisper already depends on.
"""

from __future__ import annotations

import io
import struct
import wave

import numpy as np

from pipeline.audio import resample
from pipeline.engines.base import PCM

RATE = 16000


class NotAudio(ValueError):
    """The upload is not audio we can decode."""


def decode_upload(data: bytes) -> PCM:
    """Decode an uploaded file to mono int16 at 16 kHz (blocking). Raises NotAudio."""
    if not data:
        raise NotAudio("the file is empty")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            return _read_wav(data)
        except (wave.Error, EOFError, ValueError):
            pass  # e.g. float or compressed WAV: PyAV reads those
    try:
        from faster_whisper.audio import decode_audio

        x = decode_audio(io.BytesIO(data), sampling_rate=RATE)
    except Exception as e:  # PyAV raises a family of its own errors for anything it cannot read
        raise NotAudio(f"the file is not audio we can decode ({type(e).__name__})") from e
    if len(x) == 0:
        raise NotAudio("the file holds no audio samples")
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _read_wav(data: bytes) -> PCM:
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            raise ValueError("not 16-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    if channels > 1:
        pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels).mean(axis=1).astype(np.int16)
    if len(pcm) == 0:
        raise NotAudio("the file holds no audio samples")
    return resample(pcm, rate, RATE)


def streaming_wav_header(rate: int) -> bytes:
    """A mono 16-bit WAV header whose sizes say "unknown" (0xFFFFFFFF), for audio streamed as made.

    Players and soundfile/ffmpeg read such a stream to its end; OpenAI's streamed WAV does the same.
    """
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )
