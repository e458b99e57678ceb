"""Batches on one model: finals before partials, groups that waited merged, stale partials dropped.

Plain asyncio (no Ray here), so the same scheduler runs in the Serve replica (`inference.stt`)
and in `bench/gpu_check.py`, which drives another decoder on a GPU machine without Ray.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class Job:
    """One transcription request as queued on a replica."""

    audio: npt.NDArray[np.int16]
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

    def __init__(self, decode: Callable[[list[Job]], list[Any]], *, max_batch: int, stale_s: float) -> None:
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
            groups = [(g, future) for g, future in groups if not future.done()]  # done: caller gone
            if not groups:
                continue
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
                if not future.done():
                    future.set_result(
                        [result_of(by_job.get(id(j)), j, len(live), started, compute_s) for j in group]
                    )


def result_of(transcript: Any, job: Job, batch: int, started: float, compute_s: float) -> dict[str, Any]:
    """What a replica answers for one job (plain data: it crosses processes)."""
    return {
        "stale": transcript is None,
        "text": transcript.text if transcript else "",
        "language": transcript.language if transcript else (job.language or ""),
        "duration_s": len(job.audio) / SAMPLE_RATE,
        "avg_logprob": transcript.avg_logprob if transcript else None,
        "no_speech_prob": transcript.no_speech_prob if transcript else None,
        "end_prob": transcript.end_prob if transcript else None,
        "end_alternatives": [list(a) for a in transcript.end_alternatives] if transcript else [],
        "batch_size": batch,
        "queue_s": started - job.queued_at,
        "compute_s": compute_s,
    }
