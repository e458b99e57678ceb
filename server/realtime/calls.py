"""The per-user registry of open calls: the open-call limit, pushes to a user's calls, and draining.

`await calls.push(user_id, {"type": "silvertalk.generation.updated", ...})` sends a custom server
event to every open call of that user, wherever it is held: with Redis it is published through
`server.notify` and each gateway process delivers it to its own calls (`deliver`); without Redis it
goes straight to this process's calls. The gateway registers each call with `open()` and removes it
with `close()`.

The per-user limit spans processes when Redis is configured: each call holds a slot in a sorted set
`<prefix>calls:<user id>` scored by its expiry, claimed atomically by a Lua script and renewed by a
heartbeat, so the slots of a crashed process free themselves after `realtime_call_lease_s`. While
Redis cannot be reached, calls are admitted against this process's own count (a Redis blip must not
refuse a caller); the heartbeat puts their slots in Redis once it is back.

Draining (SIGTERM): `drain()` tells every call to end (close code 1012) at its first quiet moment or
when the grace period runs out, and returns once they have gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import ServerError, notify

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Drop the expired slots, then add (or renew) this call's when there is room. TIME is Redis's own
# clock, so gateways whose clocks differ still agree on what has expired. ARGV: call id, limit (a
# negative limit renews without a check: a call already open is never evicted), lease in ms.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
if limit >= 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""

#: How long one Redis command may take before Redis counts as unreachable (the client sets none).
REDIS_TIMEOUT_S = 2.0
#: How long `drain()` waits past the grace period for calls to finish closing.
CLOSE_MARGIN_S = 5.0


class TooManyCalls(ServerError):
    """The user already has the maximum number of open calls."""


@dataclass(slots=True)
class OpenCall:
    user_id: uuid.UUID
    conversation_id: uuid.UUID | None
    send: Send
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class CallRegistry:
    """Open calls of this process; the limit and pushes shared through Redis when given one.

    Use as an async context manager around the app's life: it runs the heartbeat and the push
    subscription (with Redis) until exit.
    """

    def __init__(
        self,
        max_per_user: int,
        redis: Redis | None = None,
        *,
        prefix: str = "silvertalk:",
        lease_s: float = 20.0,
    ) -> None:
        self.max_per_user = max_per_user
        self.redis = redis
        self.prefix = prefix
        self.lease_s = lease_s
        self._calls: dict[uuid.UUID, dict[str, OpenCall]] = {}
        self._lock = asyncio.Lock()
        self._claim = redis.register_script(CLAIM) if redis is not None else None
        self._tasks: list[asyncio.Task[None]] = []
        self._empty = asyncio.Event()
        self._empty.set()
        #: Set when draining starts; `drain_deadline` (monotonic) is when calls get cut off.
        self.draining = asyncio.Event()
        self.drain_deadline = float("inf")

    async def __aenter__(self) -> CallRegistry:
        if self.redis is not None:
            subscribed = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._heartbeat(), name="calls-heartbeat"),
                asyncio.create_task(
                    notify.listen(self.redis, self.prefix, self.deliver, subscribed=subscribed),
                    name="calls-push-subscription",
                ),
            ]
            # Start serving with the subscription in place when Redis is up; when it is down,
            # serve anyway (the listener keeps retrying).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await subscribed.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- the limit -------------------------------------------------------------------------------

    async def open(self, call: OpenCall) -> None:
        """Register a call; raises TooManyCalls when the user is at the limit."""
        async with self._lock:
            mine = self._calls.get(call.user_id, {})
            admitted = await self._claim_slot(call, len(mine))
            if not admitted:
                raise TooManyCalls(f"at most {self.max_per_user} open calls per user")
            self._calls.setdefault(call.user_id, {})[call.id] = call
            self._empty.clear()

    async def close(self, call: OpenCall) -> None:
        async with self._lock:
            mine = self._calls.get(call.user_id, {})
            mine.pop(call.id, None)
            if not mine:
                self._calls.pop(call.user_id, None)
            if not self._calls:
                self._empty.set()
        if self.redis is not None:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    await self.redis.zrem(self._key(call.user_id), call.id)
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("calls: could not free a slot in Redis (%s); it expires on its own", e)

    def count(self, user_id: uuid.UUID | None = None) -> int:
        """Open calls in this process (of one user, or all)."""
        if user_id is None:
            return sum(len(c) for c in self._calls.values())
        return len(self._calls.get(user_id, {}))

    async def _claim_slot(self, call: OpenCall, local: int) -> bool:
        if self._claim is not None:
            try:
                lease_ms = int(self.lease_s * 1000)
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    got = await self._claim(
                        keys=[self._key(call.user_id)], args=[call.id, self.max_per_user, lease_ms]
                    )
                return bool(got)
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("calls: Redis unavailable (%s); limiting open calls in-process", e)
        return local < self.max_per_user

    async def _heartbeat(self) -> None:
        """Renew every open call's slot, and put back those admitted while Redis was away."""
        assert self._claim is not None
        lease_ms = int(self.lease_s * 1000)
        while True:
            await asyncio.sleep(self.lease_s / 4)
            for call in [c for mine in list(self._calls.values()) for c in mine.values()]:
                try:
                    async with asyncio.timeout(REDIS_TIMEOUT_S):
                        await self._claim(keys=[self._key(call.user_id)], args=[call.id, -1, lease_ms])
                except (RedisError, OSError, TimeoutError) as e:
                    log.warning("calls: heartbeat could not reach Redis (%s)", e)
                    break

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self.prefix}calls:{user_id}"

    # --- pushes ----------------------------------------------------------------------------------

    async def push(self, user_id: uuid.UUID | str, event: dict[str, Any]) -> None:
        """Send `event` to every open call of the user, in whichever gateway process holds it.

        Without Redis, or while it cannot be reached, only this process's calls get it.
        """
        uid = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
        if self.redis is not None:
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    await notify.publish_to_user(self.redis, self.prefix, uid, event)
                return
            except (RedisError, OSError, TimeoutError) as e:
                log.warning("calls: Redis unavailable (%s); pushing to this process's calls only", e)
        await self.deliver(uid, event)

    async def deliver(self, user_id: uuid.UUID, event: dict[str, Any]) -> int:
        """Send `event` to the user's calls in this process; returns how many got it."""
        sent = 0
        for call in list(self._calls.get(user_id, {}).values()):
            try:
                await call.send(dict(event))
                sent += 1
            except Exception:  # a call that is closing: the others still get it
                continue
        return sent

    # --- draining --------------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Ask every call to end within `grace_s` (see the gateway), and wait until they have.

        Returns at the latest `CLOSE_MARGIN_S` after the grace period, calls or not.
        """
        self.drain_deadline = time.monotonic() + grace_s
        self.draining.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s + CLOSE_MARGIN_S):
                await self._empty.wait()
