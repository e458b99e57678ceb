"""ASGI middleware: a request body cap (Starlette has none of its own), Unicode-clean JSON bodies,
security headers on every response, and a guard on /metrics."""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import ServerError


class BodyTooLarge(ServerError):
    """A request body over the limit; the middleware answers 413."""


async def send_json(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer `{"detail": detail}` with `status` (before the app has started a response)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MaxBodySizeMiddleware:
    """Answer 413 for bodies over `max_bytes`, by Content-Length up front or by counting the stream.

    A chunked body is counted as it is read; once over, whatever the app answers (FastAPI turns
    the failed read into a 400 "error parsing the body") is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        received = 0
        overflowed = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if overflowed:
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await self._reject(send)
                return  # the app's own answer to the failed read is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        await send_json(send, 413, f"Request body is larger than {self.max_bytes} bytes")


# A JSON escape of a UTF-16 surrogate; only bodies that contain one are decoded here.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class UnicodeJsonMiddleware:
    """Answer 422 for a JSON body with a lone surrogate ("\\ud800") anywhere in it.

    JSON allows the escape, Python decodes it, but it is no character: it cannot be stored in
    PostgreSQL, written to a log or sent back in UTF-8, so it would surface later as a 500. Paired
    surrogates (an emoji written as two escapes) are fine. The body is buffered to look at it;
    MaxBodySizeMiddleware (outside this one) bounds it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # the client left; let the app see it
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if _SURROGATE_ESCAPE.search(body):
            try:
                lone = _has_lone_surrogate(json.loads(body))
            except (ValueError, RecursionError):
                lone = False  # not JSON: the route's own parsing answers 422
            if lone:
                await send_json(
                    send, 422, "Text must be valid Unicode: a lone surrogate such as \\ud800 is not allowed"
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _is_json(scope: Scope) -> bool:
    """A JSON body, or one without a content type (which FastAPI may read as JSON)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True


# Responses of the API are JSON and files, never pages: nothing may run, load or frame them. Routes
# that serve pages (the call page) send their own Content-Security-Policy, which is kept.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's /docs and /redoc load their scripts from a CDN: only framing is forbidden there.
DOCS_CSP = "frame-ancestors 'none'"


class SecurityHeadersMiddleware:
    """Add nosniff, no framing, no referrer, a Content-Security-Policy and (when the service is
    served over https) HSTS to every HTTP response that does not set its own."""

    def __init__(
        self, app: ASGIApp, *, hsts: bool, docs_paths: tuple[str, ...] = ("/docs", "/redoc")
    ) -> None:
        self.app = app
        self.docs_paths = docs_paths
        self.headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        docs = any(path == p or path.startswith(p + "/") for p in self.docs_paths)
        csp = (b"content-security-policy", (DOCS_CSP if docs else API_CSP).encode())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in [*self.headers, csp] if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class MetricsGuardMiddleware:
    """`GET /metrics` needs `Authorization: Bearer <metrics_token>` when a token is set; without one
    it is open where `open_without_token` (development, test) and 404 otherwise (production): call
    counts and latencies are nobody else's business."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, open_without_token: bool, path: str = "/metrics"
    ) -> None:
        self.app = app
        self.token = token
        self.open = open_without_token
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        if self.token is None:
            if self.open:
                await self.app(scope, receive, send)
            else:
                await send_json(send, 404, "Not Found")
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
        if hmac.compare_digest(given, b"Bearer " + self.token.encode()):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, "Metrics need the bearer token", [(b"www-authenticate", b"Bearer")])
