"""A caregiver's webhook receiver on 127.0.0.1:<free port>, checking Standard Webhooks signatures.

It verifies each delivery with its own HMAC code (not ours), so a test proves our signatures are
what any Standard Webhooks receiver accepts. `fail_first` deliveries are answered 503 (a receiver
that is down for a moment); `fail_always` answers 503 to all::

    with Caregiver(secret, fail_first=1) as receiver:
        ... settings.caregiver_webhook_url = receiver.url
        receiver.deliveries   # [(status answered, headers, parsed body, signature valid)]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.gemini import ThreadedASGI


@dataclass
class Delivery:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    signature_valid: bool


@dataclass
class Caregiver:
    secret: str
    fail_first: int = 0
    fail_always: bool = False
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadedASGI(
            Starlette(routes=[Route("/hooks/alerts", self._receive, methods=["POST"])])
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/hooks/alerts"

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _valid(self, headers: dict[str, str], raw: bytes) -> bool:
        key = base64.b64decode(self.secret.split("_", 1)[1])
        signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + raw
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        offered = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
        return any(hmac.compare_digest(expected, s) for s in offered)

    async def _receive(self, request: Request) -> JSONResponse:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        valid = self._valid(headers, raw)
        with self._lock:
            failing = self.fail_always or len(self.deliveries) < self.fail_first
            status = 401 if not valid else (503 if failing else 200)
            self.deliveries.append(Delivery(status, headers, json.loads(raw), valid))
        return JSONResponse({"received": status == 200}, status_code=status)
