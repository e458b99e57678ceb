"""The per-user registry of open calls, so other features can speak to a caller's live call.

`await calls.push(user_id, {"type": "silvertalk.generation.updated", ...})` sends a custom server
event to every open call of that user (it returns how many got it). The gateway registers each call
with `open()` and removes it with `close()`; the per-user limit is enforced here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server import ServerError

Send = Callable[[dict[str, Any]], Awaitable[None]]


class TooManyCalls(ServerError):
    """The user already has the maximum number of open calls."""


@dataclass(slots=True)
class OpenCall:
    user_id: uuid.UUID
    conversation_id: uuid.UUID | None
    send: Send
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class CallRegistry:
    def __init__(self, max_per_user: int) -> None:
        self.max_per_user = max_per_user
        self._calls: dict[uuid.UUID, dict[str, OpenCall]] = {}
        self._lock = asyncio.Lock()

    async def open(self, call: OpenCall) -> None:
        """Register a call; raises TooManyCalls when the user is at the limit."""
        async with self._lock:
            mine = self._calls.setdefault(call.user_id, {})
            if len(mine) >= self.max_per_user:
                raise TooManyCalls(f"at most {self.max_per_user} open calls per user")
            mine[call.id] = call

    async def close(self, call: OpenCall) -> None:
        async with self._lock:
            mine = self._calls.get(call.user_id, {})
            mine.pop(call.id, None)
            if not mine:
                self._calls.pop(call.user_id, None)

    def count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is None:
            return sum(len(c) for c in self._calls.values())
        return len(self._calls.get(user_id, {}))

    async def push(self, user_id: uuid.UUID | str, event: dict[str, Any]) -> int:
        """Send `event` to each open call of the user; returns how many calls it went to."""
        uid = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(str(user_id))
        calls = list(self._calls.get(uid, {}).values())
        sent = 0
        for call in calls:
            try:
                await call.send(dict(event))
                sent += 1
            except Exception:  # a call that is closing: the others still get it
                continue
        return sent
