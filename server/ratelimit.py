"""Rate limiting: a fixed one-minute window, counted in Redis when configured (so it holds across
processes), in-process while Redis is down.

Two uses: per user on every authenticated request (`RateLimiter.check` from the auth dependency),
and per client address on the doors anyone can knock on without an account (login, refresh and
WebSocket upgrades to /v1/realtime: `AddressRateLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence

from fastapi import HTTPException, status
from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

#: Redis answers a count in well under a millisecond; one that takes this long is as good as down.
REDIS_TIMEOUT_S = 1.0
#: After Redis failed, count in-process this long before trying it again, so that a Redis that
#: hangs costs one request `REDIS_TIMEOUT_S` now and then, not every request.
REDIS_RETRY_AFTER_S = 5.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimiter:
    """`check(key)` counts one request and raises 429 with Retry-After once the window is full.

    Redis keys are `<prefix><key>:<minute>`, expiring after the minute.
    """

    def __init__(
        self, per_minute: int, redis: Redis | None = None, prefix: str = "silvertalk:ratelimit:"
    ) -> None:
        self.per_minute = per_minute
        self.redis = redis
        self.prefix = prefix
        self._local: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._redis_retry_at = 0.0  # monotonic; Redis is skipped until then after a failure

    async def hit(self, key: str) -> tuple[int, int]:
        """Count a request; return (count in this window, seconds until the window resets)."""
        now = time.time()
        window = int(now // 60)
        reset_in = 60 - int(now % 60)
        if self.redis is not None and time.monotonic() >= self._redis_retry_at:
            rkey = f"{self.prefix}{key}:{window}"
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

    async def over(self, key: str) -> int | None:
        """Count a request; None if within the limit, else the seconds until the window resets."""
        if self.per_minute <= 0:
            return None
        count, reset_in = await self.hit(key)
        return reset_in if count > self.per_minute else None

    async def check(self, key: str) -> None:
        retry_after = await self.over(key)
        if retry_after is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "Too many requests; please slow down",
                headers={"Retry-After": str(retry_after)},
            )


def trusted_networks(entries: Sequence[str]) -> list[IPNetwork]:
    """Parse `trusted_proxies` entries (addresses or CIDR networks); ValueError names a bad one."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


def client_address(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The address a request came from: the peer, or when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not itself a trusted proxy (the left ones are whatever
    the client wrote)."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


LOGIN_PATHS = frozenset({"/v1/auth/kakao", "/v1/auth/dev-login", "/v1/auth/refresh"})
REALTIME_PATH = "/v1/realtime"


class AddressRateLimitMiddleware:
    """Per client address limits on login and refresh (HTTP 429) and on WebSocket upgrades to
    /v1/realtime (refused before accept: HTTP 429 where the server lets us answer the upgrade,
    otherwise a close that the server turns into HTTP 403).

    The counters live in the app's Redis (found at request time in `app.state.services`, made in the
    lifespan), so all processes of a deployment share them.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        login_per_minute: int,
        realtime_per_minute: int,
        trusted_proxies: Sequence[str],
        prefix: str,
    ) -> None:
        self.app = app
        self.limits = {"login": login_per_minute, "realtime": realtime_per_minute}
        self.trusted = trusted_networks(trusted_proxies)
        self.prefix = prefix
        self._limiters: dict[str, RateLimiter] = {}

    def _group(self, scope: Scope) -> str | None:
        path = scope.get("path", "")
        if scope["type"] == "http" and scope.get("method") == "POST" and path in LOGIN_PATHS:
            return "login"
        if scope["type"] == "websocket" and (path == REALTIME_PATH or path.startswith(REALTIME_PATH + "/")):
            return "realtime"
        return None

    def _limiter(self, scope: Scope, group: str) -> RateLimiter:
        services = getattr(scope["app"].state, "services", None)
        redis = services.redis if services is not None else None
        limiter = self._limiters.get(group)
        if limiter is None or limiter.redis is not redis:
            limiter = self._limiters[group] = RateLimiter(self.limits[group], redis, f"{self.prefix}{group}:")
        return limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        group = self._group(scope) if scope["type"] in ("http", "websocket") else None
        if group is None or self.limits[group] <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = await self._limiter(scope, group).over(client_address(scope, self.trusted))
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "Too many attempts from this address; please wait a minute"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 429, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
