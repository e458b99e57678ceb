"""The speech-to-text deployment: one Whisper model per replica, concurrent requests decoded as one batch.

Requests from many calls arrive one by one; `@serve.batch` gathers those that wait together and
`pipeline.engines.whisper.decode_batch` decodes them in one fitted mel window and one CTranslate2
`generate`, so on a GPU eight calls cost about what one does. Finals and partials are batched
separately, and a final batch always goes before a waiting partial batch (`BatchScheduler`): a
caller who stopped speaking never waits behind other callers' partial transcripts. A partial that
has already waited longer than `inference_stt_partial_stale_s` is not decoded at all (its caller
has moved on; it is answered `stale`), so partials thin out by themselves when the queue grows.

Each result carries the batch size, its queue wait and the batch's compute time; the ingress
turns those into Prometheus metrics.
"""

from __future__ import annotations

import time
from typing import Any

from ray import serve

from inference.batching import BatchScheduler, Job
from pipeline.engines.base import PCM, Transcript
from pipeline.engines.whisper import DecodeRequest, WhisperSTT, decode_batch
from server.settings import Settings


@serve.deployment(name="STT")
class STTDeployment:
    """A replica holding one Whisper model (device and compute type from settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # WhisperSTT loads the model, proves CUDA works and falls back to CPU int8 when it does not.
        self.engine = WhisperSTT(
            settings.stt_model_dir,
            device=settings.stt_device,
            cpu_threads=settings.stt_cpu_threads,
            kernel_cache=settings.stt_kernel_cache,
            min_window_s=settings.stt_min_window_s,
        )
        self._scheduler = BatchScheduler(
            self._decode,
            max_batch=settings.inference_stt_max_batch_size,
            stale_s=settings.inference_stt_partial_stale_s,
        )
        for handler in (self._finals, self._partials):
            handler.set_max_batch_size(settings.inference_stt_max_batch_size)  # type: ignore[attr-defined]
            handler.set_batch_wait_timeout_s(settings.inference_stt_batch_wait_s)  # type: ignore[attr-defined]

    async def transcribe(
        self, audio: PCM, language: str | None, prompt: str | None, partial: bool = False
    ) -> dict[str, Any]:
        """Decode one clip (mono int16 at 16 kHz) in the next batch; returns `result_of`'s dict."""
        job = Job(audio, language, prompt, partial, time.monotonic())
        if partial:
            return await self._partials(job)  # type: ignore[no-any-return]
        return await self._finals(job)  # type: ignore[no-any-return]

    def info(self) -> dict[str, Any]:
        """Device and compute type actually in use (after any CUDA -> CPU fallback)."""
        return {"device": self.engine.device, "compute_type": self.engine.compute_type}

    # Groups go on to the scheduler at once (several "concurrent batches"), where they merge.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0, max_concurrent_batches=8)
    async def _finals(self, jobs: list[Job]) -> list[dict[str, Any]]:
        return await self._scheduler.submit(jobs, final=True)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0, max_concurrent_batches=8)
    async def _partials(self, jobs: list[Job]) -> list[dict[str, Any]]:
        return await self._scheduler.submit(jobs, final=False)

    def _decode(self, jobs: list[Job]) -> list[Transcript]:
        model = self.engine.model
        requests = [
            DecodeRequest(j.audio, j.language or self._detect(j.audio), j.prompt, ending=not j.partial)
            for j in jobs
        ]
        return decode_batch(model, requests, min_window_s=self.engine.min_window_s)

    def _detect(self, audio: PCM) -> str:
        """Whisper's language identification, for requests that name no language."""
        from pipeline.audio import to_float

        language, _probability, _all = self.engine.model.detect_language(to_float(audio))
        return str(language)
