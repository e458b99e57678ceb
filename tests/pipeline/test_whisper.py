"""The real Whisper engine: transcription of real speech, hallucination filtering, clear start failures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import EngineUnavailable
from pipeline.engines.whisper import WhisperSTT, is_hallucination
from tests.pipeline.conftest import JFK_TEXT, word_error_rate


def test_missing_model_names_the_fix(tmp_path: Path) -> None:
    """Loading from an empty directory fails at start with the command that fixes it."""
    with pytest.raises(EngineUnavailable, match="make models"):
        WhisperSTT(tmp_path / "nothing-here", device="cpu")


async def test_jfk_transcribed(whisper: WhisperSTT, jfk: np.ndarray) -> None:
    """The JFK recording is transcribed with a word error rate of at most 10%."""
    t0 = time.perf_counter()
    transcript = await whisper.transcribe(jfk, language="en")
    elapsed = time.perf_counter() - t0
    assert word_error_rate(JFK_TEXT, transcript.text) <= 0.1, transcript.text
    assert transcript.language == "en" and transcript.no_speech_prob is not None
    print(f"jfk 11 s decode: {elapsed:.2f} s")


@pytest.mark.parametrize(("language", "level"), [("ko", 0), ("ko", 30), ("en", 30)])
async def test_silence_gives_no_text(whisper: WhisperSTT, language: str, level: int) -> None:
    """Digital silence and faint hiss yield an empty transcript, not an invented phrase."""
    audio = (np.random.default_rng(0).standard_normal(32000) * level).astype(np.int16)
    transcript = await whisper.transcribe(audio, language=language)
    assert transcript.text == ""


def test_hallucination_filter_keeps_real_thanks() -> None:
    """Known phrases are dropped on near-silence but a clearly spoken "Thank you." is kept."""
    assert is_hallucination(
        "시청해주셔서 감사합니다.", no_speech_prob=0.2, compression_ratio=1.0, level_dbfs=-70
    )
    assert is_hallucination("Thank you.", no_speech_prob=0.8, compression_ratio=1.0, level_dbfs=-30)
    assert not is_hallucination("Thank you.", no_speech_prob=0.1, compression_ratio=1.0, level_dbfs=-25)
    assert is_hallucination("영상에서 " * 30, no_speech_prob=0.7, compression_ratio=4.4, level_dbfs=-30)
    assert not is_hallucination("오늘 병원에 가요", no_speech_prob=0.7, compression_ratio=1.1, level_dbfs=-30)
