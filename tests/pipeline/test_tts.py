"""Text to speech: Piper speech understood by Whisper, espeak-ng Korean, XTTS's clear failures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import EngineUnavailable, FatalEngineError
from pipeline.audio import resample, rms_dbfs
from pipeline.engines.base import PCM, TextToSpeech
from pipeline.engines.espeak import EspeakTTS
from pipeline.engines.piper import PiperTTS
from pipeline.engines.whisper import WhisperSTT
from pipeline.engines.xtts import XttsTTS, check_files, to_pcm16
from tests.pipeline.conftest import word_error_rate


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS()


async def chunks(tts: TextToSpeech, text: str, **kw: object) -> tuple[list[PCM], float]:
    """All chunks, and the seconds until the first one arrived."""
    t0 = time.perf_counter()
    out: list[PCM] = []
    first = 0.0
    async for c in tts.synthesize(text, **kw):  # type: ignore[arg-type]
        if not out:
            first = time.perf_counter() - t0
        out.append(c)
    return out, first


async def test_piper_speech_is_understood_by_whisper(piper: PiperTTS, whisper: WhisperSTT) -> None:
    """Piper's English, resampled to 16 kHz and fed to Whisper, comes back as the same words."""
    text = "Good morning. Did you sleep well last night?"
    out, first = await chunks(piper, text, language="en")
    assert len(out) == 2 and piper.sample_rate == 22050  # one chunk per sentence
    audio = np.concatenate(out)
    transcript = await whisper.transcribe(resample(audio, 22050, 16000), language="en")
    assert word_error_rate(text, transcript.text) <= 0.15, transcript.text
    print(f"piper first chunk {first * 1000:.0f} ms, {len(audio) / 22050:.2f} s of audio")


async def test_piper_speed_changes_duration(piper: PiperTTS) -> None:
    """A slower speech rate gives proportionally longer audio."""
    normal = np.concatenate((await chunks(piper, "How are you feeling today?", speed=1.0))[0])
    slow = np.concatenate((await chunks(piper, "How are you feeling today?", speed=0.7))[0])
    assert 1.15 < len(slow) / len(normal) < 1.6  # pauses and phoneme noise do not all scale


async def test_espeak_korean_is_plausible_speech() -> None:
    """espeak-ng renders a Korean sentence as non-silent audio of a plausible length, fast."""
    tts = EspeakTTS()
    text = "안녕하세요 김영희 님. 오늘 기분은 어떠세요?"
    await chunks(tts, "준비", language="ko")  # first use loads the Korean dictionary
    out, first = await chunks(tts, text, language="ko")
    audio = np.concatenate(out)
    seconds = len(audio) / tts.sample_rate
    assert tts.sample_rate == 22050 and 2.0 < seconds < 8.0
    assert rms_dbfs(audio) > -30
    slow = np.concatenate((await chunks(tts, text, language="ko", speed=0.6))[0])
    assert len(slow) > 1.3 * len(audio)
    english = np.concatenate((await chunks(tts, "Hello there", language="en"))[0])
    assert len(english) > 0.3 * tts.sample_rate
    print(f"espeak ko {seconds:.2f} s of audio in {first * 1000:.1f} ms")


async def test_espeak_unknown_language_is_fatal() -> None:
    """A language espeak-ng has no voice for is a clear, non-retryable error."""
    with pytest.raises(FatalEngineError, match="no voice"):
        await chunks(EspeakTTS(), "hello", language="xx-nowhere")


def test_xtts_without_settings_or_files_says_what_is_missing(tmp_path: Path) -> None:
    """XTTS fails at start naming the setting, the missing checkpoint file or the missing recording."""
    with pytest.raises(EngineUnavailable, match="SILVERTALK_XTTS_MODEL_DIR"):
        XttsTTS(None, None)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EngineUnavailable, match=r"missing model\.pth, vocab\.json"):
        check_files(tmp_path, tmp_path / "me.wav")
    (tmp_path / "model.pth").write_bytes(b"x")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(EngineUnavailable, match="speaker recording not found"):
        check_files(tmp_path, tmp_path / "me.wav")


def test_xtts_without_coqui_names_the_extra(tmp_path: Path) -> None:
    """With the files present but coqui-tts not importable, the error names the extra to install."""
    for name in ("config.json", "model.pth", "vocab.json", "me.wav"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(EngineUnavailable, match=r'pip install -e "\.\[xtts\]"'):
        XttsTTS(tmp_path, tmp_path / "me.wav")


def test_xtts_chunk_conversion() -> None:
    """Float chunks in [-1, 1] (clipped beyond) become mono int16."""
    pcm = to_pcm16(np.array([[0.0, 0.5, -1.0, 1.7]], dtype=np.float32))
    assert pcm.dtype == np.int16 and pcm.tolist() == [0, 16383, -32767, 32767]
