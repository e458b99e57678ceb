"""`GET /v1/chat/updates`: the user's status changes as Server-Sent Events, for an open page.

Each event is one `data:` line of JSON: `silvertalk.message.updated` (voice messages) and
`silvertalk.generation.updated` (pictures and videos), the same events a call receives. A comment
line every `KEEPALIVE_S` keeps proxies from closing an idle stream. Delivery is at most once: a
page that reconnects reads the current state from the REST API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from server.deps import CurrentUser, ServicesDep
from server.jobs.push import pages
from server.notify import user_channel

router = APIRouter(prefix="/v1/chat", tags=["chat"])
log = logging.getLogger("silvertalk.chat")

KEEPALIVE_S = 15.0


@router.get(
    "/updates", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
async def updates(request: Request, user: CurrentUser, services: ServicesDep) -> StreamingResponse:
    """Stream this user's message and generation updates until the client goes away."""
    source = (
        _redis_events(services, user.id) if services.redis is not None else _local_events(services, user.id)
    )

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        events = source.__aiter__()
        # One pending read carried across keepalives (cancelling it would close the generator).
        pending: asyncio.Task[dict[str, Any]] | None = None
        try:
            while not await request.is_disconnected():
                pending = pending or asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
                if not done:
                    yield b": keepalive\n\n"
                    continue
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()
        finally:
            if pending is not None:
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            await source.aclose()  # type: ignore[attr-defined]

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def _local_events(services: Any, user_id: Any) -> AsyncIterator[dict[str, Any]]:
    with pages(services).listen(user_id) as queue:
        while True:
            yield await queue.get()


async def _redis_events(services: Any, user_id: Any) -> AsyncIterator[dict[str, Any]]:
    channel = user_channel(services.settings.redis_prefix, user_id)
    try:
        async with services.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(channel)
            async for message in pubsub.listen():
                try:
                    event = json.loads(message["data"])
                except (ValueError, TypeError, KeyError):
                    continue
                if isinstance(event, dict):
                    yield event
    except (RedisError, OSError) as e:  # the page reconnects and re-reads the state
        log.warning("updates for %s: Redis subscription lost: %s", user_id, e)
