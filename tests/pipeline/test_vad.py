"""webrtcvad behind an energy floor, on real speech from the fixtures."""

from __future__ import annotations

import numpy as np
from faster_whisper import decode_audio

from pipeline.audio import from_float
from pipeline.vad import FRAME_SAMPLES, FrameSplitter, Vad, aggressiveness
from tests.conftest import FIXTURES


def test_threshold_maps_to_aggressiveness() -> None:
    """The session threshold 0..1 maps onto webrtcvad modes 0..3, 0.5 -> 2."""
    assert [aggressiveness(t) for t in (0.0, 0.3, 0.5, 0.8, 1.0)] == [0, 1, 2, 3, 3]


def test_real_speech_is_voiced_and_silence_is_not() -> None:
    """Most frames of the JFK clip are speech; digital silence and faint hiss never are."""
    pcm = from_float(decode_audio(str(FIXTURES / "jfk.flac"), sampling_rate=16000))
    vad = Vad(0.5)
    frames = FrameSplitter().push(pcm)
    voiced = sum(vad.is_speech(f) for f in frames)
    assert 0.5 < voiced / len(frames) < 0.98
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(FRAME_SAMPLES) * 30).astype(np.int16)  # about -60 dBFS
    assert not vad.is_speech(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    assert not vad.is_speech(hiss)


def test_frame_splitter_keeps_the_remainder() -> None:
    """Odd-sized chunks come out as whole 20 ms frames with nothing lost."""
    split = FrameSplitter()
    chunks = [np.arange(n, dtype=np.int16) for n in (100, 500, 333, 347)]
    frames = [f for c in chunks for f in split.push(c)]
    assert len(frames) == (100 + 500 + 333 + 347) // FRAME_SAMPLES == 4
    assert all(len(f) == FRAME_SAMPLES for f in frames)
