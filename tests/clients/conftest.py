"""Fixtures for the client tests: a live server with the real speech engines, and speech audio files."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.realtime_client import load_pcm
from tests.conftest import FIXTURES, LiveServer, make_settings

JFK = FIXTURES / "jfk.flac"
JFK_WORDS = ("fellow", "country")  # Whisper hears "Americans" as "America" now and then
SILENCE_AFTER_SPEECH_S = 4.5


@pytest.fixture
def live_server(tmp_path: Path, sqlite_url: str) -> Iterator[LiveServer]:
    """The whole service on a free port with its speech engines loaded; the page's origin is allowed."""
    settings = make_settings(tmp_path, sqlite_url, preload_engines=True)
    server = LiveServer(settings)
    # The port is only known now; the gateway's Origin check must accept the page it serves.
    settings.allowed_origins = [server.url, f"http://localhost:{server.port}"]
    with server:
        yield server


def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


@pytest.fixture(scope="session")
def speech_wav_48k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """jfk.flac as 16-bit PCM WAV at 48 kHz mono (what Chromium's fake capture plays best) + silence.

    Chromium loops the file: the trailing silence lets the first turn end and its reply start
    before the speech starts again, which is then a barge-in. The turn ends 0.35-2.5 s after the
    speech (the end of turn of wave 2), its reply starts about a second later on a busy machine,
    and at voice speed 0.8 lasts about 5.5 s: 4.5 s of silence lands inside it (6.5 s did not
    once the end of turn got quicker: the reply could be over before he spoke again).
    """
    rate = 48_000
    pcm = load_pcm(JFK, rate) + bytes(int(rate * SILENCE_AFTER_SPEECH_S) * 2)
    yield write_wav(tmp_path_factory.mktemp("audio") / "jfk-48k.wav", pcm, rate)
