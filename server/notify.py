"""Cross-process push to a user's live calls, over Redis pub/sub.

Any process (a gateway, a job worker) calls `publish_to_user(redis, prefix, user_id, event)`; every
gateway process runs one `listen()` (a single pattern subscription on `<prefix>user:*`) and hands
each event to its own open calls of that user. Delivery is at most once: an event published while a
gateway is reconnecting to Redis is not seen by that gateway's calls (what it announces is also in
the REST API, so a client that reconnects reads the state there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Deliver = Callable[[uuid.UUID, dict[str, Any]], Awaitable[object]]

#: Reconnect delays after Redis goes away: from the first to the last, doubling.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 10.0


def user_channel(prefix: str, user_id: uuid.UUID) -> str:
    """The pub/sub channel that carries events for one user's calls."""
    return f"{_head(prefix)}{user_id}"


def user_pattern(prefix: str) -> str:
    """The pattern matching every user's channel (glob characters in the prefix are escaped)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", _head(prefix)) + "*"


def _head(prefix: str) -> str:
    return f"{prefix}user:"


async def publish_to_user(redis: redis.Redis, prefix: str, user_id: uuid.UUID, event: dict[str, Any]) -> None:
    """Publish `event` (a server event such as `silvertalk.generation.updated`) as JSON to the user.

    Every gateway holding a call of that user sends it on; nothing happens when none does.
    Raises RedisError (or OSError) when Redis cannot be reached: the caller decides what then.
    """
    await redis.publish(user_channel(prefix, user_id), json.dumps(event, ensure_ascii=False))


async def listen(
    redis: redis.Redis, prefix: str, deliver: Deliver, *, subscribed: asyncio.Event | None = None
) -> None:
    """Deliver each user event published under `prefix` until cancelled; reconnect with backoff.

    `subscribed` is set each time the subscription is (re)established. A malformed message is
    logged and skipped; a failing `deliver` is logged and the next message still goes out.
    """
    head = _head(prefix)
    delay = BACKOFF_FIRST_S
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.psubscribe(user_pattern(prefix))
                if subscribed is not None:
                    subscribed.set()
                delay = BACKOFF_FIRST_S
                async for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        await _hand_on(message, head, deliver)
        except (RedisError, OSError) as e:
            if subscribed is not None:
                subscribed.clear()
            log.warning("push: Redis subscription lost (%s); retrying in %.1f s", e, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)


async def _hand_on(message: dict[str, Any], head: str, deliver: Deliver) -> None:
    channel = _text(message.get("channel"))
    try:
        user_id = uuid.UUID(channel[len(head) :])
        event = json.loads(_text(message.get("data")))
        if not isinstance(event, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:  # JSONDecodeError and a bad UUID are ValueErrors
        log.warning("push: dropped a malformed message on %s: %s", channel, e)
        return
    try:
        await deliver(user_id, event)
    except Exception:  # one user's broken call must not stop everyone else's pushes
        log.exception("push: delivering to user %s failed", user_id)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
