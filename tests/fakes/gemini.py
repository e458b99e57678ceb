"""A fake Gemini API on 127.0.0.1:<free port>, speaking streamGenerateContent over SSE.

Real HTTP (Starlette + uvicorn in a thread), so the real google-genai client is exercised end to
end. Use::

    with FakeGemini(reply="안녕하세요. 반가워요.", ttft_s=0.3) as fake:
        client = genai.Client(api_key=fake.api_key, http_options={"base_url": fake.url})
        ...
        fake.requests[-1].body["contents"]     # what the client sent

`reply` is the default answer: a string, a `Reply`, or a function of the request body returning
either (benchmarks echo or pick per turn). `fake.script(r1, r2, ...)` queues replies used first,
one per request, for failures and function calls::

    fake.script(Reply.error(429), Reply.call("get_weather", city="Seoul"), Reply.safety())

Each reply streams its text in `chunks` pieces: the first after `ttft_s`, the next ones
`chunk_delay_s` apart; the last chunk carries the finish reason and usage. Failures a real
upstream shows: `Reply.error(429)` (or 500, 503), `Reply.hanging()` (never answers: the client's
timeout fires), `Reply.mid_stream_error()` (an error chunk), `Reply.cut_off()` (the stream ends
mid-sentence with no finish reason), `Reply.dropped()` (the connection is lost mid-stream) and
`Reply.stalled()` (the stream goes silent mid-sentence and stays open). Accepts
`/v1/...` and `/v1beta/...`; checks `x-goog-api-key` (missing: 403, wrong: 400 API_KEY_INVALID).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class Reply:
    """One scripted answer. Build with the class methods for the unusual ones."""

    text: str = ""
    #: (name, args) of functionCall parts, sent after the text.
    calls: Sequence[tuple[str, dict[str, Any]]] = ()
    chunks: int = 3
    finish_reason: str = "STOP"
    #: Non-200: answer at once with Google's JSON error body instead of a stream.
    status: int = 200
    #: Send an `{"error": ...}` chunk after this many text chunks (an error mid-stream).
    error_after: int | None = None
    #: Never answer (the client's timeout must fire).
    hang: bool = False
    #: End the stream cleanly after this many text chunks, with no finish reason (a proxy or the
    #: upstream giving up mid-answer).
    stop_after: int | None = None
    #: With `stop_after`: drop the connection instead (no end of the chunked body).
    abort: bool = False
    #: With `stop_after`: keep the connection open and send nothing more (a stalled backend).
    stall: bool = False
    ttft_s: float | None = None

    @classmethod
    def error(cls, status: int) -> Reply:
        return cls(status=status)

    @classmethod
    def call(cls, name: str, text: str = "", **args: Any) -> Reply:
        return cls(text=text, calls=[(name, args)])

    @classmethod
    def safety(cls, text: str = "") -> Reply:
        return cls(text=text, finish_reason="SAFETY", chunks=1)

    @classmethod
    def mid_stream_error(cls, text: str = "Hello there, how are", status: int = 500) -> Reply:
        return cls(text=text, chunks=2, error_after=1, status=status)

    @classmethod
    def cut_off(cls, text: str = "Hello there, how are you feeling today, and did", after: int = 1) -> Reply:
        return cls(text=text, chunks=3, stop_after=after)

    @classmethod
    def dropped(cls, text: str = "Hello there, how are you feeling today, and did", after: int = 1) -> Reply:
        return cls(text=text, chunks=3, stop_after=after, abort=True)

    @classmethod
    def stalled(cls, text: str = "Hello there, how are you feeling today, and did", after: int = 1) -> Reply:
        return cls(text=text, chunks=3, stop_after=after, stall=True)

    @classmethod
    def hanging(cls) -> Reply:
        return cls(hang=True)


@dataclass
class Recorded:
    """A request as received: its `body` is the parsed JSON the client sent."""

    method: str
    path: str
    api_version: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]


def split_text(text: str, n: int) -> list[str]:
    """Cut `text` into at most `n` pieces at spaces (the way the real API cuts: mid-sentence)."""
    words = text.split(" ")
    n = max(1, min(n, len(words)))
    size = -(-len(words) // n)
    parts = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def _error_body(status: int, message: str | None = None) -> dict[str, Any]:
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message or f"fake {name}", "status": name}}


class ThreadedASGI:
    """Runs an ASGI app with uvicorn on 127.0.0.1:<free port> in a daemon thread.

    The socket is bound here and handed to uvicorn, so no other process can take the port first.
    """

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class ScriptedFake:
    """What the scripted LLM fakes share: a queue of replies, a server thread, a context manager.

    A subclass sets `reply` (the default answer, or a function of the request body), calls
    `_serve(app)` from `__post_init__`, and names the base path its client expects in `url_path`.
    """

    reply: str | Reply | Callable[[dict[str, Any]], str | Reply]
    url_path = ""

    def _serve(self, app: Any) -> None:
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()  # set at exit: releases requests scripted to hang
        self._server = ThreadedASGI(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}{self.url_path}"

    def script(self, *replies: Reply | str) -> None:
        """Queue replies for the next requests, in order; then the default `reply` applies again."""
        with self._lock:
            self._queue.extend(r if isinstance(r, Reply) else Reply(text=r) for r in replies)

    def clear_script(self) -> None:
        """Forget the replies queued by `script` and not used yet."""
        with self._lock:
            self._queue.clear()

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.stop()

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        reply = self.reply(body) if callable(self.reply) else self.reply
        return reply if isinstance(reply, Reply) else Reply(text=reply)


@dataclass
class FakeGemini(ScriptedFake):
    """The fake server. `url` is the base URL to give the client; `requests` records every call."""

    reply: str | Reply | Callable[[dict[str, Any]], str | Reply] = "안녕하세요. 오늘 기분은 어떠세요?"
    ttft_s: float = 0.3
    chunk_delay_s: float = 0.02
    api_key: str = "fake-gemini-key"
    model_version: str = "gemini-2.5-flash-fake"
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._serve(
            Starlette(
                routes=[Route("/{version}/models/{model_action:str}", self._generate, methods=["POST"])]
            )
        )

    # --- the endpoint ---------------------------------------------------------------------------

    async def _generate(self, request: Request) -> Response:
        version = request.path_params["version"]
        model, _, action = request.path_params["model_action"].partition(":")
        if version not in {"v1", "v1beta"} or action != "streamGenerateContent":
            return JSONResponse(_error_body(404, f"no such method {action!r}"), status_code=404)
        key = request.headers.get("x-goog-api-key")
        if not key:
            return JSONResponse(_error_body(403, "Method doesn't allow unregistered callers."), 403)
        if key != self.api_key:
            body = _error_body(400, "API key not valid. Please pass a valid API key.")
            body["error"]["details"] = [{"reason": "API_KEY_INVALID"}]
            return JSONResponse(body, status_code=400)
        payload = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded("POST", request.url.path, version, model, headers, payload))
        problem = unanswered_calls(payload.get("contents") or [])
        if problem:
            return JSONResponse(_error_body(400, problem), status_code=400)
        reply = self._next_reply(payload)
        ttft = self.ttft_s if reply.ttft_s is None else reply.ttft_s
        if reply.hang:
            await asyncio.to_thread(self._closing.wait, 120)
            return Response(status_code=504)
        if reply.status != 200 and reply.error_after is None:
            await asyncio.sleep(min(ttft, 0.05))
            return JSONResponse(_error_body(reply.status), status_code=reply.status)
        return StreamingResponse(self._events(reply, ttft), media_type="text/event-stream")

    async def _events(self, reply: Reply, ttft: float) -> AsyncIterator[bytes]:
        response_id = uuid.uuid4().hex[:16]
        pieces: list[dict[str, Any]] = (
            [{"text": t} for t in split_text(reply.text, reply.chunks)] if reply.text else []
        )
        pieces += [{"functionCall": {"name": name, "args": args}} for name, args in reply.calls]
        if not pieces:
            pieces = [{"text": ""}]
        await asyncio.sleep(ttft)
        for i, part in enumerate(pieces):
            if i:
                await asyncio.sleep(self.chunk_delay_s)
            if reply.error_after is not None and i == reply.error_after:
                yield _sse(_error_body(reply.status if reply.status != 200 else 500))
                return
            if reply.stop_after is not None and i == reply.stop_after:
                if reply.abort:
                    raise ConnectionAbortedError("fake Gemini drops the connection mid-stream")
                if reply.stall:
                    await asyncio.to_thread(self._closing.wait, 120)
                return
            last = i == len(pieces) - 1
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [part]}, "index": 0}
            if last:
                candidate["finishReason"] = reply.finish_reason
            chunk: dict[str, Any] = {
                "candidates": [candidate],
                "modelVersion": self.model_version,
                "responseId": response_id,
            }
            if last:
                chunk["usageMetadata"] = {
                    "promptTokenCount": 20,
                    "candidatesTokenCount": 10,
                    "totalTokenCount": 30,
                }
            yield _sse(chunk)


def unanswered_calls(contents: list[dict[str, Any]]) -> str | None:
    """What the real API refuses with 400: a model turn's functionCall parts must be answered by
    functionResponse parts with the same names in the very next (user) turn, and a functionResponse
    must answer one."""
    for i, content in enumerate(contents):
        parts = content.get("parts") or []
        responses = [p["functionResponse"].get("name") for p in parts if "functionResponse" in p]
        if responses:
            before = contents[i - 1] if i else {}
            calls = [p["functionCall"].get("name") for p in before.get("parts") or [] if "functionCall" in p]
            if before.get("role") != "model" or sorted(calls) != sorted(responses):
                return (
                    "Please ensure that function response turn comes immediately after a function call turn."
                )
        calls = [p["functionCall"].get("name") for p in parts if "functionCall" in p]
        if calls and i + 1 < len(contents):
            after = contents[i + 1].get("parts") or []
            if not any("functionResponse" in p for p in after):
                return (
                    "Please ensure that function call turn comes immediately before a function response turn."
                )
    return None


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\r\n\r\n".encode()
