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

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ray import serve

from pipeline.engines.base import PCM, Transcript
from pipeline.engines.whisper import SAMPLE_RATE, DecodeRequest, WhisperSTT, decode_batch
from server.settings import Settings


@dataclass(frozen=True, slots=True)
class Job:
    """One transcription request as queued on a replica."""

    audio: PCM
    language: str | None
    prompt: str | None
    partial: bool
    queued_at: float


class BatchScheduler:
    """Runs decodes on the one model, one batch at a time: finals first, waiting groups merged.

    `@serve.batch` gathers the requests that arrive together into a group, but it forms the next
    group as soon as its short wait is over, even while the model is busy, so under load it would
    hand over groups of one. Groups wait here instead, and when the model is free every waiting
    group of the same kind (up to `max_batch` requests) is decoded as one batch: the batch grows
    with the queue. Finals always go before partials; a batch already decoding is never
    interrupted (CTranslate2 cannot be), so a final waits at most for one batch in progress.
    """

    def __init__(
        self, decode: Callable[[list[Job]], list[Transcript]], *, max_batch: int, stale_s: float
    ) -> None:
        self._decode = decode
        self.max_batch, self.stale_s = max_batch, stale_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper-batch")
        self._waiting: dict[bool, deque[tuple[list[Job], asyncio.Future[list[dict[str, Any]]]]]] = {
            True: deque(),
            False: deque(),
        }
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, jobs: list[Job], *, final: bool) -> list[dict[str, Any]]:
        """Queue a group; returns `result_of` for each of its jobs once its batch is decoded."""
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[final].append((jobs, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting[True] or self._waiting[False]:
            final = bool(self._waiting[True])
            queue = self._waiting[final]
            groups = [queue.popleft()]
            size = len(groups[0][0])
            while queue and size + len(queue[0][0]) <= self.max_batch:
                groups.append(queue.popleft())
                size += len(groups[-1][0])
            started = time.monotonic()
            jobs = [j for g, _ in groups for j in g]
            # A partial that waited this long describes audio its caller has long spoken past.
            live = [j for j in jobs if final or started - j.queued_at <= self.stale_s]
            try:
                decoded = await loop.run_in_executor(self._executor, self._decode, live) if live else []
            except Exception as e:  # the decode failed: every request of the batch hears why
                for _, future in groups:
                    if not future.done():
                        future.set_exception(e)
                continue
            compute_s = time.monotonic() - started
            by_job = {id(j): t for j, t in zip(live, decoded, strict=True)}
            for group, future in groups:
                if not future.done():  # done = cancelled: its caller went away
                    future.set_result(
                        [result_of(by_job.get(id(j)), j, len(live), started, compute_s) for j in group]
                    )


def result_of(
    transcript: Transcript | None, job: Job, batch: int, started: float, compute_s: float
) -> dict[str, Any]:
    """What a replica answers for one job (plain data: it crosses processes)."""
    return {
        "stale": transcript is None,
        "text": transcript.text if transcript else "",
        "language": transcript.language if transcript else (job.language or ""),
        "duration_s": len(job.audio) / SAMPLE_RATE,
        "avg_logprob": transcript.avg_logprob if transcript else None,
        "no_speech_prob": transcript.no_speech_prob if transcript else None,
        "batch_size": batch,
        "queue_s": started - job.queued_at,
        "compute_s": compute_s,
    }


@serve.deployment(name="STT")
class STTDeployment:
    """A replica holding one Whisper model (device and compute type from settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # WhisperSTT loads the model, proves CUDA works and falls back to CPU int8 when it does not.
        self.engine = WhisperSTT(
            settings.stt_model_dir, device=settings.stt_device, cpu_threads=settings.stt_cpu_threads
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
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, max_concurrent_batches=8)
    async def _finals(self, jobs: list[Job]) -> list[dict[str, Any]]:
        return await self._scheduler.submit(jobs, final=True)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01, max_concurrent_batches=8)
    async def _partials(self, jobs: list[Job]) -> list[dict[str, Any]]:
        return await self._scheduler.submit(jobs, final=False)

    def _decode(self, jobs: list[Job]) -> list[Transcript]:
        model = self.engine.model
        requests = [DecodeRequest(j.audio, j.language or self._detect(j.audio), j.prompt) for j in jobs]
        return decode_batch(model, requests)

    def _detect(self, audio: PCM) -> str:
        """Whisper's language identification, for requests that name no language."""
        from pipeline.audio import to_float

        language, _probability, _all = self.engine.model.detect_language(to_float(audio))
        return str(language)
