"""Prometheus metrics of live calls, and `GET /metrics` in the text exposition format.

Each app gets its own `CollectorRegistry` (tests build many apps in one process). Besides the call
metrics, `silvertalk_asyncio_tasks` and `silvertalk_threads` are read at each scrape, so a leak of
tasks or threads over many calls shows (the soak benchmark watches them).
"""

from __future__ import annotations

import asyncio
import math
import threading

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000, 4000, 6000, 10000)
STAGES = ("turn_end", "transcript", "llm_first_token", "tts_first_audio", "first_audio_sent")


class CallMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_ms = Histogram(
            "silvertalk_turn_stage_ms",
            "Milliseconds from the end of the caller's speech to each stage of the reply",
            ["stage"],
            buckets=BUCKETS_MS,
            registry=self.registry,
        )
        self.responses = Counter(
            "silvertalk_responses_total", "Replies by final status", ["status"], registry=self.registry
        )
        self.llm_failures = Counter(
            "silvertalk_llm_failures_total",
            "Replies whose LLM failed (apology spoken)",
            registry=self.registry,
        )
        self.barge_in_stop_ms = Histogram(
            "silvertalk_barge_in_stop_ms",
            "Milliseconds from speech_started to the interrupted reply's last audio byte sent",
            buckets=(0, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=self.registry,
        )
        self.calls_open = Gauge("silvertalk_calls_open", "Open realtime calls", registry=self.registry)
        self.calls_total = Counter(
            "silvertalk_calls_total", "Realtime calls accepted", registry=self.registry
        )
        self.tasks = Gauge(
            "silvertalk_asyncio_tasks",
            "asyncio tasks alive on the server's event loop",
            registry=self.registry,
        )
        self.tasks.set_function(_tasks_alive)
        self.threads = Gauge(
            "silvertalk_threads", "Threads alive in the server process", registry=self.registry
        )
        self.threads.set_function(threading.active_count)

    def observe_response(self, status: str, timings: dict[str, float]) -> None:
        self.responses.labels(status).inc()
        if status == "failed":
            self.llm_failures.inc()
        for stage in STAGES:
            value = timings.get(f"{stage}_ms")
            if value is not None:
                self.stage_ms.labels(stage).observe(value)
        if (stop := timings.get("barge_in_stop_ms")) is not None:
            self.barge_in_stop_ms.observe(stop)


def _tasks_alive() -> float:
    """Tasks on the running loop (scrapes run on it); NaN when collected outside a loop."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return math.nan


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    m: CallMetrics | None = request.app.state.services.metrics
    body = generate_latest(m.registry) if m is not None else b""
    return Response(body, media_type=CONTENT_TYPE_LATEST)
