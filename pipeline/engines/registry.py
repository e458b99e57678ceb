"""Which engines a deployment runs: settings names -> factories, and the loaded set.

Each factory takes the `Settings` object and reads only its own fields (engines never read the
environment). Heavy modules are imported inside the factories, so naming an engine is what pulls
in its SDK. `load_engines` is blocking (models load): the gateway calls it in a thread at start.

- `stt_engine`: "whisper", or "remote" (`pipeline.engines.remote`: the inference tier, vLLM, speaches).
- `llm_engine`: "auto" (Gemini when `gemini_api_key` or `gemini_base_url` is set, else
  OpenAI-compatible when `openai_compat_base_url` is set, else the offline companion), or one of
  "gemini", "openai_compat", "offline".
- `turn_engine`: "smart_turn" (the audio end-of-turn model) or "none".
- `tts_engine`: "auto" (per language: `tts_voice_en` for English, `tts_voice_ko` for Korean, espeak
  for every other language), or one engine name for all languages ("piper", "espeak", "xtts",
  "remote").
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline import EngineUnavailable
from pipeline.engines.base import EndOfTurnModel, LanguageModel, SpeechToText, TextToSpeech


def _lazy(module: str, function: str = "load") -> Callable[[Any], Any]:
    """A factory that imports `pipeline.engines.<module>` only when called and runs its `function`."""

    def factory(settings: Any) -> Any:
        return getattr(importlib.import_module(f"pipeline.engines.{module}"), function)(settings)

    factory.__name__ = f"load_{module}"
    return factory


STT: dict[str, Callable[[Any], SpeechToText]] = {
    "whisper": _lazy("whisper"),
    # The OpenAI audio API of the inference tier, vLLM or speaches (`stt_remote_*` settings).
    "remote": _lazy("remote", "load_stt"),
}
LLM: dict[str, Callable[[Any], LanguageModel]] = {
    name: _lazy(name) for name in ("gemini", "openai_compat", "offline")
}
TTS: dict[str, Callable[[Any], TextToSpeech]] = {
    **{name: _lazy(name) for name in ("piper", "espeak", "xtts")},
    "remote": _lazy("remote", "load_tts"),  # `tts_remote_*` settings
}
TURN: dict[str, Callable[[Any], EndOfTurnModel | None]] = {
    "smart_turn": _lazy("smart_turn"),
    "none": lambda _: None,
}


@dataclass
class Engines:
    """The engines one server uses for every call. `tts` maps a language (or "*") to its voice."""

    stt: SpeechToText
    llm: LanguageModel
    tts: dict[str, TextToSpeech]
    #: The engine names chosen, for logs and /readyz ("stt", "llm", "tts:ko", ...).
    names: dict[str, str] = field(default_factory=dict)
    #: The audio end-of-turn model, if one is configured.
    turn: EndOfTurnModel | None = None

    def tts_for(self, language: str) -> TextToSpeech:
        """The voice for `language` ("ko", "ko-KR", "en-US" ...), falling back to the "*" voice."""
        base = language.lower().split("-")[0]
        return self.tts.get(language) or self.tts.get(base) or self.tts["*"]

    def each(self) -> list[tuple[str, Any]]:
        """(name, engine) for every engine, each once (a voice shared by languages under its first
        name; no end-of-turn model when none is configured)."""
        named = [
            ("stt", self.stt),
            ("llm", self.llm),
            *((f"tts:{k}", v) for k, v in self.tts.items()),
            ("turn", self.turn),
        ]
        seen: set[int] = set()
        out = []
        for name, engine in named:
            if engine is not None and id(engine) not in seen:
                seen.add(id(engine))
                out.append((name, engine))
        return out

    def warm_up(self) -> dict[str, float]:
        """Run each local model once (blocking), so the first call after a start is not slower
        than the rest (kernels compiled, onnxruntime's first run). Engines without a `warm_up`
        (remote ones, the LLM) are left alone. Returns seconds per engine that was warmed."""
        took: dict[str, float] = {}
        for name, engine in self.each():
            warm = getattr(engine, "warm_up", None)
            if warm is not None:
                start = time.perf_counter()
                warm()
                took[name] = time.perf_counter() - start
        return took

    async def aclose(self) -> None:
        """Release clients and model threads (at server shutdown). Engines shared by languages close once."""
        for _, engine in self.each():
            if hasattr(engine, "aclose"):
                await engine.aclose()
            elif hasattr(engine, "close"):
                await asyncio.to_thread(engine.close)


def llm_name(settings: Any) -> str:
    """The LLM engine `llm_engine` stands for ("auto" resolved)."""
    name = str(settings.llm_engine).lower()
    if name != "auto":
        return name
    if settings.gemini_api_key or settings.gemini_base_url:
        return "gemini"
    if settings.openai_compat_base_url:
        return "openai_compat"
    return "offline"


def tts_names(settings: Any) -> dict[str, str]:
    """Language -> TTS engine name, "*" for every other language."""
    name = str(settings.tts_engine).lower()
    if name != "auto":
        return {"*": name}
    return {"en": settings.tts_voice_en, "ko": settings.tts_voice_ko, "*": "espeak"}


def _pick(kind: str, table: dict[str, Callable[[Any], Any]], name: str) -> Callable[[Any], Any]:
    try:
        return table[name]
    except KeyError:
        choices = ", ".join(sorted(table))
        raise EngineUnavailable(f"unknown {kind} engine {name!r}: choose one of {choices}") from None


def load_engines(settings: Any) -> Engines:
    """Load every configured engine (blocking: models load here). Raises EngineUnavailable.

    A TTS engine used for several languages is loaded once and shared.
    """
    names = {
        "stt": str(settings.stt_engine).lower(),
        "llm": llm_name(settings),
        "turn": str(settings.turn_engine).lower(),
    }
    voices = tts_names(settings)
    factories = {
        "stt": _pick("speech-to-text", STT, names["stt"]),
        "llm": _pick("language model", LLM, names["llm"]),
        "turn": _pick("end-of-turn", TURN, names["turn"]),
    }
    tts_factories = {lang: _pick("text-to-speech", TTS, voice) for lang, voice in voices.items()}
    stt = factories["stt"](settings)
    llm = factories["llm"](settings)
    loaded: dict[str, TextToSpeech] = {}
    tts: dict[str, TextToSpeech] = {}
    for lang, voice in voices.items():
        if voice not in loaded:
            loaded[voice] = tts_factories[lang](settings)
        tts[lang] = loaded[voice]
        names[f"tts:{lang}"] = voice
    return Engines(stt=stt, llm=llm, tts=tts, names=names, turn=factories["turn"](settings))
