"""Status changes to the user's open calls and pages, from whichever process made them.

With Redis: published on the user's channel (`server.notify`); every gateway process listens and
hands them to that user's calls, and each open page stream (`GET /v1/chat/updates`) subscribes to
the channel itself. Without Redis (everything in one process): handed straight to this process's
call registry and to its open page streams (`Pages`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from server.notify import publish_to_user

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.jobs")

#: Events a slow page may have waiting before the oldest are dropped (it re-reads the API anyway).
PAGE_BACKLOG = 100


class Pages:
    """This process's open page streams, by user (the in-process stand-in for Redis pub/sub)."""

    def __init__(self) -> None:
        self._queues: dict[uuid.UUID, set[asyncio.Queue[dict[str, Any]]]] = {}

    @contextmanager
    def listen(self, user_id: uuid.UUID) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(PAGE_BACKLOG)
        self._queues.setdefault(user_id, set()).add(queue)
        try:
            yield queue
        finally:
            queues = self._queues.get(user_id, set())
            queues.discard(queue)
            if not queues:
                self._queues.pop(user_id, None)

    def deliver(self, user_id: uuid.UUID, event: dict[str, Any]) -> None:
        for queue in self._queues.get(user_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)


def pages(services: Services) -> Pages:
    if services.pages is None:
        services.pages = Pages()
    return services.pages


async def push_to_user(services: Services, user_id: uuid.UUID, event: dict[str, Any]) -> None:
    """Best effort: a push that cannot go out is logged; the state is in the REST API anyway."""
    try:
        if services.redis is not None:
            await publish_to_user(services.redis, services.settings.redis_prefix, user_id, event)
            return
        pages(services).deliver(user_id, event)
        calls = services.calls
        if calls is not None:
            await calls.push(user_id, event)
    except (RedisError, OSError) as e:
        log.warning("push to user %s failed: %s", user_id, e)
    except Exception:  # a broken call must not break the job that reports to it
        log.warning("push to user %s failed", user_id, exc_info=True)
