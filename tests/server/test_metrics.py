"""`GET /metrics`: the process gauges a soak watches are read at each scrape."""

from __future__ import annotations

import re
import threading

from fastapi.testclient import TestClient


def gauge(body: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", body, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_count_live_asyncio_tasks_and_threads(client: TestClient) -> None:
    """The tasks and threads gauges are live counts taken on the server's loop, not placeholders."""
    body = client.get("/metrics").text
    assert gauge(body, "silvertalk_asyncio_tasks") >= 1  # at least the request being served
    assert gauge(body, "silvertalk_threads") >= 1
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    extra = threading.Thread(target=hold)
    extra.start()
    started.wait(5)
    try:
        assert (
            gauge(client.get("/metrics").text, "silvertalk_threads") >= gauge(body, "silvertalk_threads") + 1
        )
    finally:
        release.set()
        extra.join()
