"""Status changes to the user's open calls and pages, from whichever process made them.

With Redis: published on the user's channel (`server.notify`), which every gateway process listens
to, so a job worker's events reach calls held by any server process. Without Redis (everything in
one process): handed straight to this process's call registry.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from server.notify import publish_to_user

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.jobs")


async def push_to_user(services: Services, user_id: uuid.UUID, event: dict[str, Any]) -> None:
    """Best effort: a push that cannot go out is logged; the state is in the REST API anyway."""
    try:
        if services.redis is not None:
            await publish_to_user(services.redis, services.settings.redis_prefix, user_id, event)
            return
        calls = services.extras.get("calls")
        if calls is not None:
            await calls.push(user_id, event)
    except (RedisError, OSError) as e:
        log.warning("push to user %s failed: %s", user_id, e)
    except Exception:  # a broken call must not break the job that reports to it
        log.warning("push to user %s failed", user_id, exc_info=True)
