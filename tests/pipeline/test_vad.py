"""webrtcvad behind an energy floor, on real speech from the fixtures."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import decode_audio

from pipeline.audio import Resampler, from_float
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


@pytest.mark.parametrize("low_latency", [True, False])
def test_the_callers_audio_is_resampled_without_holding_any_back(low_latency: bool) -> None:
    """The models' resampler returns each 20 ms of 24 kHz audio as 20 ms at 16 kHz at once; soxr's
    high quality (for what people hear) holds some back."""
    resampler = Resampler(24000, 16000, low_latency=low_latency)
    out = [len(resampler.push(np.full(480, 1000, np.int16))) for _ in range(10)]
    assert (out == [320] * 10) is low_latency, out


async def test_the_end_of_speech_is_heard_in_the_frame_it_was_sent() -> None:
    """A caller at 24 kHz: the conversation hears speech stop as soon as it would at 16 kHz, not a
    frame or two later (that lag was in every turn's answer and every barge-in)."""
    from pipeline.events import SpeechStopped
    from tests.pipeline.callkit import Call

    async def chunks_until_stopped(rate: int) -> int:
        call = Call(input_rate=rate)
        try:
            t = np.arange(910 * rate // 1000) / rate  # callkit's speech, made at this rate, ending mid-frame
            voiced = ((t * 140) % 1.0 - 0.5) * 2 * 0.3 * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
            audio = np.concatenate([(voiced * 32767).astype(np.int16), np.zeros(3 * rate, np.int16)])
            step = rate // 50
            for n, i in enumerate(range(0, len(audio), step), 1):
                call.conv.push_audio(audio[i : i + step])
                call.clock.t += 0.02
                await call.settle(4)
                if call.of(SpeechStopped):
                    return n
            raise AssertionError("speech never stopped")
        finally:
            await call.close()

    assert await chunks_until_stopped(24000) == await chunks_until_stopped(16000)
