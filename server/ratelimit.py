"""Per-user request rate limiting: a fixed one-minute window, in Redis when configured."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from fastapi import HTTPException, status
from redis.asyncio import Redis

log = logging.getLogger(__name__)

#: Redis answers a count in well under a millisecond; one that takes this long is as good as down.
REDIS_TIMEOUT_S = 1.0
#: After Redis failed, count in-process this long before trying it again, so that a Redis that
#: hangs costs one request `REDIS_TIMEOUT_S` now and then, not every request.
REDIS_RETRY_AFTER_S = 5.0


class RateLimiter:
    """`check(key)` counts one request and raises 429 with Retry-After once the window is full."""

    def __init__(self, per_minute: int, redis: Redis | None = None) -> None:
        self.per_minute = per_minute
        self.redis = redis
        self._local: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._redis_retry_at = 0.0  # monotonic; Redis is skipped until then after a failure

    async def hit(self, key: str) -> tuple[int, int]:
        """Count a request; return (count in this window, seconds until the window resets)."""
        now = time.time()
        window = int(now // 60)
        reset_in = 60 - int(now % 60)
        if self.redis is not None and time.monotonic() >= self._redis_retry_at:
            rkey = f"ratelimit:{key}:{window}"
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S), self.redis.pipeline(transaction=True) as pipe:
                    pipe.incr(rkey)
                    pipe.expire(rkey, 61)
                    count, _ = await pipe.execute()
                return int(count), reset_in
            except Exception as e:
                # A Redis outage must not take the API down with it: count in-process until it is
                # back. Any failure counts (a reset connection can surface as a RuntimeError from
                # the transport, a hung one as our timeout), not only RedisError.
                self._redis_retry_at = time.monotonic() + REDIS_RETRY_AFTER_S
                log.warning("rate limiter: Redis unavailable (%r); counting in-process", e)
        slot = (key, window)
        self._local[slot] = self._local.get(slot, 0) + 1
        while len(self._local) > 10_000:
            self._local.popitem(last=False)
        return self._local[slot], reset_in

    async def check(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        count, reset_in = await self.hit(key)
        if count > self.per_minute:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "Too many requests; please slow down",
                headers={"Retry-After": str(reset_in)},
            )
