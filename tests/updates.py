"""Reading `GET /v1/chat/updates` (Server-Sent Events) from a test, in a thread."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx


class UpdatesReader:
    """Collects the stream's events in a thread until `stop()` or the server closes it."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, args=(base_url, headers), daemon=True)

    def __enter__(self) -> UpdatesReader:
        self._thread.start()
        assert self.connected.wait(15), "the updates stream did not open"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()  # ends the reading thread's iter_lines
        self._thread.join(20)

    def _read(self, base_url: str, headers: dict[str, str]) -> None:
        with (
            httpx.Client(base_url=base_url, trust_env=False, timeout=httpx.Timeout(30, read=None)) as client,
            client.stream("GET", "/v1/chat/updates", headers=headers) as r,
        ):
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            self._response = r
            self.connected.set()
            try:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
            except (httpx.HTTPError, RuntimeError, ValueError):
                if not self._stop.is_set():
                    raise

    def statuses(self, message_id: str) -> list[str]:
        return [
            e["message"]["status"]
            for e in list(self.events)
            if e.get("type") == "silvertalk.message.updated" and e["message"]["id"] == message_id
        ]
