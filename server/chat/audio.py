"""Audio in and out of voice messages: any common upload to 16 kHz PCM, and replies as WAV or Opus.

Uploads are decoded with faster-whisper's `decode_audio` (PyAV, FFmpeg inside), so WAV, M4A/AAC
from phones, WebM/Opus and Ogg/Opus from browsers, MP3 and FLAC all work. Decoding is blocking:
callers run these functions in a thread.
"""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import numpy.typing as npt

from server.chat import BadAudio

SAMPLE_RATE = 16_000
PCM = npt.NDArray[np.int16]
#: Shorter than this is an empty recording (a tap on the button, not a message).
MIN_SECONDS = 0.3


def decode_upload(data: bytes, *, max_seconds: float) -> PCM:
    """16 kHz mono int16 samples of an upload. Raises BadAudio (not audio, empty, too long)."""
    from faster_whisper.audio import decode_audio

    if not data:
        raise BadAudio("The audio file is empty")
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as probe:
            if not probe.streams.audio:
                raise BadAudio("The file has no audio in it")
            if probe.duration is not None and probe.duration / av.time_base > max_seconds + 1:
                raise BadAudio(f"The recording is too long: at most {max_seconds:.0f} seconds")
        samples = decode_audio(io.BytesIO(data), sampling_rate=SAMPLE_RATE)
    except BadAudio:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError) as e:
        raise BadAudio("This is not audio we can read: send WAV, M4A/AAC, WebM/Opus, Ogg, MP3 or FLAC") from e
    seconds = len(samples) / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise BadAudio("The recording is empty (no sound was recorded)")
    if seconds > max_seconds:
        raise BadAudio(f"The recording is too long: at most {max_seconds:.0f} seconds")
    pcm: PCM = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    return pcm


def to_wav(pcm: PCM, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()


def from_wav(data: bytes) -> tuple[PCM, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        pcm: PCM = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return pcm, w.getframerate()


def wav_to_ogg_opus(data: bytes) -> bytes:
    """The same speech as Ogg/Opus (about a tenth of the WAV's size) at 48 kHz, Opus's own rate."""
    pcm, rate = from_wav(data)
    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48_000)
        stream.layout = "mono"  # type: ignore[union-attr]
        stream.bit_rate = 32_000  # type: ignore[union-attr]  # speech: plenty, a third of the default
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):  # type: ignore[union-attr]
                container.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            container.mux(packet)
    return out.getvalue()
