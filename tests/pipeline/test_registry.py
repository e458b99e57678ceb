"""The engine registry: settings pick the engines, missing models fail at start with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import EngineUnavailable
from pipeline.engines.espeak import EspeakTTS
from pipeline.engines.gemini import GeminiLLM
from pipeline.engines.offline import OfflineLLM
from pipeline.engines.openai_compat import OpenAICompatLLM
from pipeline.engines.piper import PiperTTS
from pipeline.engines.registry import Engines, llm_name, load_engines, tts_names
from pipeline.engines.smart_turn import SmartTurn
from pipeline.engines.whisper import WhisperSTT
from server.settings import Settings


def settings(tmp_path: Path, **kw: Any) -> Settings:
    values: dict[str, Any] = {"environment": "test", "data_dir": tmp_path, "llm_engine": "auto"}
    values.update(kw)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({}, "offline"),
        ({"gemini_api_key": "k"}, "gemini"),
        ({"gemini_base_url": "http://127.0.0.1:9"}, "gemini"),
        ({"openai_compat_base_url": "http://127.0.0.1:11434/v1"}, "openai_compat"),
        ({"gemini_api_key": "k", "openai_compat_base_url": "http://x/v1"}, "gemini"),
        ({"llm_engine": "offline", "gemini_api_key": "k"}, "offline"),
    ],
)
def test_llm_auto_choice(tmp_path: Path, kw: dict[str, Any], name: str) -> None:
    """ "auto" picks Gemini when configured, else an OpenAI-compatible server, else offline."""
    assert llm_name(settings(tmp_path, **kw)) == name


def test_tts_voices_per_language(tmp_path: Path) -> None:
    """ "auto" gives Piper for English and espeak for Korean and the rest; one name covers all."""
    assert tts_names(settings(tmp_path)) == {"en": "piper", "ko": "espeak", "*": "espeak"}
    assert tts_names(settings(tmp_path, tts_engine="xtts")) == {"*": "xtts"}


async def test_load_default_engines(tmp_path: Path, model_dir: Path) -> None:
    """The embedded default: Whisper, the offline LLM, Piper for English, espeak otherwise, Smart Turn."""
    engines = load_engines(settings(tmp_path, stt_model_dir=model_dir, stt_device="cpu"))
    assert isinstance(engines.stt, WhisperSTT) and isinstance(engines.llm, OfflineLLM)
    assert isinstance(engines.tts_for("en"), PiperTTS) and isinstance(engines.tts_for("en-US"), PiperTTS)
    assert isinstance(engines.tts_for("ko"), EspeakTTS) and isinstance(engines.tts_for("ja"), EspeakTTS)
    assert engines.tts["ko"] is engines.tts["*"]  # one espeak shared
    assert isinstance(engines.turn, SmartTurn)
    assert engines.names == {
        "stt": "whisper",
        "llm": "offline",
        "turn": "smart_turn",
        "tts:en": "piper",
        "tts:ko": "espeak",
        "tts:*": "espeak",
    }
    # Warming runs each local model once, on its own thread: Whisper, Piper and Smart Turn (espeak
    # and the offline LLM have nothing to warm); the models still answer afterwards.
    assert set(engines.warm_up()) == {"stt", "tts:en", "turn"}
    assert (await engines.stt.transcribe(np.zeros(16000, np.int16), language="en")).text == ""
    await engines.aclose()


def test_llm_engines_get_their_settings(tmp_path: Path) -> None:
    """Gemini and OpenAI-compatible engines are built from their base URL, key, model and timeout."""
    from pipeline.engines.registry import LLM

    gem = LLM["gemini"](settings(tmp_path, gemini_base_url="http://127.0.0.1:9", gemini_model="gemini-x"))
    assert isinstance(gem, GeminiLLM) and gem.model == "gemini-x"
    oai = LLM["openai_compat"](settings(tmp_path, openai_compat_base_url="http://127.0.0.1:9/v1/"))
    assert isinstance(oai, OpenAICompatLLM) and oai.url == "http://127.0.0.1:9/v1/chat/completions"
    with pytest.raises(EngineUnavailable, match="SILVERTALK_OPENAI_COMPAT_BASE_URL"):
        LLM["openai_compat"](settings(tmp_path, llm_engine="openai_compat"))


def test_missing_whisper_model_fails_at_start(tmp_path: Path) -> None:
    """A missing model directory stops the start with the command that fixes it."""
    with pytest.raises(EngineUnavailable, match=r"make models"):
        load_engines(settings(tmp_path, stt_model_dir=tmp_path / "none"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"stt_engine": "vosk"}, "speech-to-text engine 'vosk'"),
        ({"llm_engine": "gpt"}, "language model engine 'gpt'"),
        ({"tts_engine": "say"}, "text-to-speech engine 'say'"),
    ],
)
def test_unknown_engine_names_the_choices(tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    """An unknown engine name is refused before anything loads, listing the valid ones."""
    with pytest.raises(EngineUnavailable, match=match):
        load_engines(settings(tmp_path, **kw))


def test_xtts_configured_without_files_fails_clearly(tmp_path: Path, model_dir: Path) -> None:
    """tts_engine=xtts without its model directory fails at start naming the setting."""
    with pytest.raises(EngineUnavailable, match="SILVERTALK_XTTS_MODEL_DIR"):
        load_engines(settings(tmp_path, stt_model_dir=model_dir, stt_device="cpu", tts_engine="xtts"))


def test_tts_for_falls_back_to_star() -> None:
    """A language without its own voice gets the "*" voice."""
    star, en = EspeakTTS(), object()
    engines = Engines(stt=None, llm=None, tts={"en": en, "*": star})  # type: ignore[arg-type,dict-item]
    assert engines.tts_for("EN") is en
    assert engines.tts_for("vi") is star
