"""Text to speech with Coqui XTTS v2 (coqui-tts) on a GPU: the production voice, Korean and English.

Install with `pip install -e ".[xtts]"` in a CUDA image (coqui-tts, torch, torchaudio of matching
versions). Point `SILVERTALK_XTTS_MODEL_DIR` at a directory holding the XTTS v2 checkpoint
(`config.json`, `model.pth`, `vocab.json`, `speakers_xtts.pth`) and `SILVERTALK_XTTS_SPEAKER_WAV`
at a clean 6-30 s recording of the voice to clone. The speaker's conditioning latents are
computed once at load; `inference_stream` then yields audio every 20 GPT tokens at 24 kHz.

LICENCE: the XTTS v2 weights are under the Coqui Public Model License 1.0.0, which allows
non-commercial use only. Operators must obtain a commercial licence (or use another voice) before
offering Silvertalk commercially with this engine. coqui-tts (the code) is MPL-2.0.

UNVERIFIED here: no weights reach the development machines and torch 2.13's CPU build has no
torchaudio, so this module has only been checked for its error paths and chunk conversion; the
calls follow coqui-tts's `Xtts` API (load_checkpoint, get_conditioning_latents, inference_stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import EngineUnavailable, RetryableEngineError
from pipeline.engines.base import PCM
from pipeline.engines.threads import engine_executor, iterate_in

SAMPLE_RATE = 24000
CHECKPOINT_FILES = ("config.json", "model.pth", "vocab.json")
INSTALL_HINT = 'pip install -e ".[xtts]" (coqui-tts, torch and torchaudio for your CUDA version)'


def to_pcm16(chunk: Any) -> PCM:
    """A chunk from `inference_stream` (a float torch tensor or array in [-1, 1]) as mono int16."""
    if hasattr(chunk, "detach"):
        chunk = chunk.detach().float().cpu().numpy()
    x = np.asarray(chunk, dtype=np.float32).reshape(-1)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def check_files(model_dir: Path | None, speaker_wav: Path | None) -> tuple[Path, Path]:
    """The model directory and speaker recording, or EngineUnavailable saying what is missing."""
    if model_dir is None or speaker_wav is None:
        raise EngineUnavailable(
            "XTTS needs SILVERTALK_XTTS_MODEL_DIR (the XTTS v2 checkpoint directory) and "
            "SILVERTALK_XTTS_SPEAKER_WAV (a 6-30 s recording of the voice to clone)"
        )
    missing = [name for name in CHECKPOINT_FILES if not (Path(model_dir) / name).is_file()]
    if missing:
        raise EngineUnavailable(f"XTTS checkpoint incomplete in {model_dir}: missing {', '.join(missing)}")
    if not Path(speaker_wav).is_file():
        raise EngineUnavailable(f"XTTS speaker recording not found: {speaker_wav}")
    return Path(model_dir), Path(speaker_wav)


class XttsTTS:
    """A `TextToSpeech` over one XTTS v2 model and one cloned speaker."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: Path | None, speaker_wav: Path | None, *, device: str = "cuda") -> None:
        """Load the checkpoint and speaker latents (blocking, tens of seconds). Raises EngineUnavailable."""
        model_dir, speaker_wav = check_files(model_dir, speaker_wav)
        try:
            import torch
            from TTS.tts.configs.xtts_config import XttsConfig
            from TTS.tts.models.xtts import Xtts
        except (ImportError, OSError) as e:
            # OSError too: a torchaudio built for another torch fails while loading its library.
            raise EngineUnavailable(f"XTTS cannot be imported ({e}): {INSTALL_HINT}") from e
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(
                "XTTS is configured for CUDA but no GPU is visible (SILVERTALK_XTTS_DEVICE)"
            )
        config = XttsConfig()
        config.load_json(str(model_dir / "config.json"))
        model = Xtts.init_from_config(config)
        model.load_checkpoint(config, checkpoint_dir=str(model_dir), use_deepspeed=False, eval=True)
        model.to(device)
        self.model = model
        self.languages = set(config.languages)
        self.gpt_cond_latent, self.speaker_embedding = model.get_conditioning_latents(
            audio_path=[str(speaker_wav)]
        )
        self._executor = engine_executor("xtts")

    def _chunks(self, text: str, language: str, speed: float) -> Any:
        # inference_stream is a generator under torch.inference_mode; each next() runs a GPT
        # step batch and the HiFi-GAN decoder for it.
        stream = self.model.inference_stream(
            text,
            language,
            self.gpt_cond_latent,
            self.speaker_embedding,
            speed=speed,
            enable_text_splitting=True,
        )
        return (to_pcm16(chunk) for chunk in stream)

    async def synthesize(self, text: str, *, language: str = "ko", speed: float = 1.0) -> AsyncIterator[PCM]:
        """Yield 24 kHz int16 chunks as XTTS produces them (first one after ~20 GPT tokens).

        Raises RetryableEngineError on a CUDA failure (out of memory and the like).
        """
        if not text.strip():
            return
        lang = language.lower().split("-")[0]
        lang = "zh-cn" if lang == "zh" else lang
        try:
            async for chunk in iterate_in(self._executor, lambda: self._chunks(text, lang, speed)):
                if len(chunk):
                    yield chunk
        except (RuntimeError, AssertionError) as e:
            raise RetryableEngineError(f"XTTS failed: {e}") from e

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def load(settings: Any) -> XttsTTS:
    """Factory for the registry."""
    return XttsTTS(settings.xtts_model_dir, settings.xtts_speaker_wav, device=settings.xtts_device)
