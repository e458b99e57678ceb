"""Per-user request rate limiting: a fixed one-minute window, in Redis when configured."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from fastapi import HTTPException, status
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RateLimiter:
    """`check(key)` counts one request and raises 429 with Retry-After once the window is full."""

    def __init__(self, per_minute: int, redis: Redis | None = None) -> None:
        self.per_minute = per_minute
        self.redis = redis
        self._local: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def hit(self, key: str) -> tuple[int, int]:
        """Count a request; return (count in this window, seconds until the window resets)."""
        now = time.time()
        window = int(now // 60)
        reset_in = 60 - int(now % 60)
        if self.redis is not None:
            rkey = f"ratelimit:{key}:{window}"
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.incr(rkey)
                    pipe.expire(rkey, 61)
                    count, _ = await pipe.execute()
                return int(count), reset_in
            except (RedisError, OSError) as e:
                # A Redis outage must not take the API down with it: count in-process until it is back.
                log.warning("rate limiter: Redis unavailable (%s); counting in-process", e)
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
