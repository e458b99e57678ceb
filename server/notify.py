"""Push to a user's open calls and pages, from any process, over Redis pub/sub.

A worker calls `publish_to_user(redis, prefix, user_id, event)`; every gateway process listens on
the users' channels and hands each event to that user's open calls.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as redis


def user_channel(prefix: str, user_id: uuid.UUID) -> str:
    """The pub/sub channel that carries events for one user's calls."""
    return f"{prefix}user:{user_id}"


async def publish_to_user(redis: redis.Redis, prefix: str, user_id: uuid.UUID, event: dict[str, Any]) -> None:
    """Publish `event` as JSON to the user's channel. Raises RedisError when Redis is unreachable."""
    await redis.publish(user_channel(prefix, user_id), json.dumps(event, ensure_ascii=False))
