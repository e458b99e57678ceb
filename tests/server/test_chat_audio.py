"""What voice-message uploads may be: every common recording format decodes; the rest is refused."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from server.chat import BadAudio
from server.chat.audio import SAMPLE_RATE, decode_upload, from_wav, to_wav, wav_to_ogg_opus
from tests.conftest import FIXTURES

FORMATS = [  # (container, codec, rate): what phones and browsers record
    ("mp4", "aac", 44_100),  # M4A/AAC (iOS, Android)
    ("webm", "libopus", 48_000),  # WebM/Opus (Chrome, Firefox MediaRecorder)
    ("ogg", "libopus", 48_000),  # Ogg/Opus (Firefox)
    ("mp3", "libmp3lame", 44_100),
    ("wav", "pcm_s16le", 8_000),
]


def jfk() -> np.ndarray:
    return decode_upload((FIXTURES / "jfk.flac").read_bytes(), max_seconds=60)


def encode(pcm: np.ndarray, container: str, codec: str, rate: int) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as c:
        stream = c.add_stream(codec, rate=rate)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)  # type: ignore[union-attr]
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(chunk):  # type: ignore[union-attr]
                c.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            c.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(("container", "codec", "rate"), FORMATS, ids=[f[0] for f in FORMATS])
def test_common_recordings_decode(container: str, codec: str, rate: int) -> None:
    """JFK recorded as M4A/AAC, WebM/Opus, Ogg/Opus, MP3 and 8 kHz WAV decodes to 11 s at 16 kHz."""
    data = encode(jfk(), container, codec, rate)
    pcm = decode_upload(data, max_seconds=60)
    assert pcm.dtype == np.int16 and abs(len(pcm) / SAMPLE_RATE - 11.0) < 0.2
    assert np.abs(pcm).max() > 3000  # speech, not silence


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"%PDF-1.7\n" + b"x" * 2000, "not audio"),
        (to_wav(np.zeros(800, dtype=np.int16), SAMPLE_RATE), "empty"),
    ],
    ids=["nothing", "a pdf", "50 ms"],
)
def test_bad_uploads_are_refused(data: bytes, words: str) -> None:
    """Empty files, other files and clicks are BadAudio with plain words."""
    with pytest.raises(BadAudio, match=words):
        decode_upload(data, max_seconds=60)


def test_too_long_is_refused_before_decoding_everything() -> None:
    """A recording longer than the cap is refused."""
    with pytest.raises(BadAudio, match="too long: at most 5 seconds"):
        decode_upload((FIXTURES / "jfk.flac").read_bytes(), max_seconds=5)


def test_reply_as_ogg_opus_round_trips() -> None:
    """The WAV reply re-encoded as Ogg/Opus keeps its length."""
    wav = to_wav(jfk(), SAMPLE_RATE)
    assert from_wav(wav)[1] == SAMPLE_RATE
    ogg = wav_to_ogg_opus(wav)
    assert ogg[:4] == b"OggS" and len(ogg) < len(wav) / 5
    assert abs(len(decode_upload(ogg, max_seconds=60)) / SAMPLE_RATE - 11.0) < 0.2
