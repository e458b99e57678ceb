"""Prometheus metrics of the inference tier, served by the ingress at `GET /metrics`.

Recorded in the ingress from what each STT replica reports with its result (batch size, queue
wait, compute time), so one scrape sees every replica's batching. With several ingress replicas
each reports the requests it handled; sum them in Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


class TierMetrics:
    """The tier's metrics in their own registry (several apps may live in one test process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stt_batch_size = Histogram(
            "silvertalk_inference_stt_batch_size",
            "Size of the batch each transcription was decoded in",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.stt_queue_wait = Histogram(
            "silvertalk_inference_stt_queue_wait_seconds",
            "Time a transcription waited on its replica before its batch started",
            ["kind"],
            buckets=SECONDS,
            registry=self.registry,
        )
        self.stt_compute = Histogram(
            "silvertalk_inference_stt_compute_seconds",
            "Decode time of the batch each transcription was in",
            ["kind"],
            buckets=SECONDS,
            registry=self.registry,
        )
        self.tts_first_chunk = Histogram(
            "silvertalk_inference_tts_first_chunk_seconds",
            "Time from a speech request to its first audio chunk",
            buckets=SECONDS,
            registry=self.registry,
        )
        self.requests = Counter(
            "silvertalk_inference_requests",
            "Requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )

    def transcribed(self, result: dict[str, object], *, partial: bool) -> None:
        """Record what a replica reported for one transcription."""
        kind = "partial" if partial else "final"
        if result.get("stale"):
            self.requests.labels("transcriptions", "stale").inc()
            return
        self.stt_batch_size.labels(kind).observe(float(result["batch_size"]))  # type: ignore[arg-type]
        self.stt_queue_wait.labels(kind).observe(float(result["queue_s"]))  # type: ignore[arg-type]
        self.stt_compute.labels(kind).observe(float(result["compute_s"]))  # type: ignore[arg-type]
        self.requests.labels("transcriptions", "ok").inc()
