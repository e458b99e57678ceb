"""A fake OpenAI-compatible chat-completions server (what Ollama, vLLM and llama.cpp serve).

Real HTTP/SSE on 127.0.0.1:<free port>. Use::

    with FakeChat(reply="Hello!", ttft_s=0.3) as fake:
        OpenAICompatLLM(base_url=fake.url, model="llama3.1", api_key=fake.api_key)
        fake.requests[-1].body["messages"]

`fake.url` ends in `/v1`, as an Ollama base URL does. Replies are `tests.fakes.gemini.Reply`
objects (same knobs: text in `chunks` pieces, `calls`, `status`, `error_after`, `hang`,
`stop_after` with `abort` or `stall`, `finish_reason`, with "SAFETY" sent as "content_filter").
Tool-call arguments are streamed in two fragments, as real servers do. `api_key=None` accepts any
request (Ollama needs no key).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.gemini import Recorded, Reply, ScriptedFake, split_text

__all__ = ["FakeChat", "Reply"]


@dataclass
class FakeChat(ScriptedFake):
    """The fake server; `requests` records every call with its parsed JSON body."""

    reply: str | Reply | Callable[[dict[str, Any]], str | Reply] = "Hello! How are you today?"
    ttft_s: float = 0.3
    chunk_delay_s: float = 0.02
    api_key: str | None = "fake-openai-key"
    requests: list[Recorded] = field(default_factory=list)

    url_path = "/v1"

    def __post_init__(self) -> None:
        self._serve(Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])]))

    async def _chat(self, request: Request) -> Response:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse(_error(401, "Incorrect API key provided"), status_code=401)
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded("POST", request.url.path, "v1", body.get("model", ""), headers, body))
        problem = unanswered_tool_calls(body.get("messages") or [])
        if problem:
            return JSONResponse(_error(400, problem), status_code=400)
        reply = self._next_reply(body)
        ttft = self.ttft_s if reply.ttft_s is None else reply.ttft_s
        if reply.hang:
            await asyncio.to_thread(self._closing.wait, 120)
            return Response(status_code=504)
        if reply.status != 200 and reply.error_after is None:
            return JSONResponse(_error(reply.status, "fake failure"), status_code=reply.status)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._events(reply, body.get("model", ""), ttft, usage), media_type="text/event-stream"
        )

    async def _events(
        self, reply: Reply, model: str, ttft: float, usage: bool = False
    ) -> AsyncIterator[bytes]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }  # fmt: skip
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()

        await asyncio.sleep(ttft)
        pieces = split_text(reply.text, reply.chunks) if reply.text else []
        for i, text in enumerate(pieces):
            if i:
                await asyncio.sleep(self.chunk_delay_s)
            if reply.error_after is not None and i == reply.error_after:
                err = _error(reply.status if reply.status != 200 else 500, "fake failure mid-stream")
                yield f"data: {json.dumps(err)}\n\n".encode()
                return
            if reply.stop_after is not None and i == reply.stop_after:
                if reply.abort:
                    raise ConnectionAbortedError("fake chat server drops the connection mid-stream")
                if reply.stall:
                    await asyncio.to_thread(self._closing.wait, 120)
                return  # no finish_reason, no [DONE]
            yield chunk({"role": "assistant", "content": text} if i == 0 else {"content": text})
        for index, (name, args) in enumerate(reply.calls):
            arguments = json.dumps(args, ensure_ascii=False)
            half = len(arguments) // 2
            head = {"index": index, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function"}
            yield chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": arguments[:half]}}]})
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]})
        finish = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}.get(
            reply.finish_reason, "stop"
        )
        yield chunk({}, "tool_calls" if reply.calls else finish)
        if usage:  # stream_options.include_usage: one last chunk with no choices and the counts
            counts = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            yield f"data: {json.dumps({**obj, 'choices': [], 'usage': counts})}\n\n".encode()
        yield b"data: [DONE]\n\n"


def unanswered_tool_calls(messages: list[dict[str, Any]]) -> str | None:
    """What OpenAI-style servers refuse with 400: an assistant message with `tool_calls` must be
    followed by one `tool` message per call id, and a `tool` message must answer such a call."""
    open_ids: set[str] = set()
    for m in messages:
        if m.get("role") == "tool":
            if m.get("tool_call_id") not in open_ids:
                return "messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
            open_ids.discard(m["tool_call_id"])
            continue
        if open_ids:
            return "an assistant message with 'tool_calls' must be followed by tool messages for each id"
        if m.get("role") == "assistant":
            open_ids = {c["id"] for c in m.get("tool_calls") or []}
    if open_ids:  # the last turn's calls too: a call without its result is refused wherever it is
        return "an assistant message with 'tool_calls' must be followed by tool messages for each id"
    return None


def _error(status: int, message: str) -> dict[str, Any]:
    kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
