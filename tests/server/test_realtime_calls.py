"""The per-user registry of open calls: limits and pushing custom events to a user's calls."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.realtime.calls import CallRegistry, OpenCall, TooManyCalls


async def test_push_reaches_every_open_call_of_the_user_only() -> None:
    """push() sends the event to each of the user's calls, not to other users', and counts them."""
    registry = CallRegistry(max_per_user=2)
    me, other = uuid.uuid4(), uuid.uuid4()
    got: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}

    def sender(name: str) -> Any:
        async def send(event: dict[str, Any]) -> None:
            got[name].append(event)

        return send

    a, b, c = (
        OpenCall(me, None, sender("a")),
        OpenCall(me, None, sender("b")),
        OpenCall(other, None, sender("c")),
    )
    for call in (a, b, c):
        await registry.open(call)
    event = {"type": "silvertalk.generation.updated", "generation": {"status": "succeeded"}}
    assert await registry.push(str(me), event) == 2
    assert got["a"] == [event] and got["b"] == [event] and got["c"] == []
    await registry.close(a)
    assert registry.count(me) == 1 and await registry.push(me, event) == 1


async def test_the_per_user_limit_is_enforced() -> None:
    """A user at the limit cannot open another call until one closes."""
    registry = CallRegistry(max_per_user=1)
    me = uuid.uuid4()

    async def send(event: dict[str, Any]) -> None:
        return None

    first = OpenCall(me, None, send)
    await registry.open(first)
    with pytest.raises(TooManyCalls):
        await registry.open(OpenCall(me, None, send))
    await registry.close(first)
    await registry.open(OpenCall(me, None, send))
