"""The per-user registry of open calls: limits and pushing custom events to a user's calls.

With Redis, two registries on one Redis stand for two gateway processes (tests/server/test_cluster.py
runs real processes).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from server import notify
from server.realtime.calls import CallRegistry, OpenCall, TooManyCalls
from tests.conftest import free_port


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
    await registry.push(str(me), event)
    assert got["a"] == [event] and got["b"] == [event] and got["c"] == []
    await registry.close(a)
    assert registry.count(me) == 1 and await registry.deliver(me, event) == 1


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


async def noop(event: dict[str, Any]) -> None:
    return None


def prefix() -> str:
    """A fresh key and channel namespace: pub/sub channels are shared by every Redis database."""
    return f"silvertalk-test-{uuid.uuid4().hex[:8]}:"


async def test_two_registries_on_one_redis_share_the_limit(redis_url: str) -> None:
    """The limit counts calls in every process: a second process refuses the user's third call."""
    p = prefix()
    async with (
        Redis.from_url(redis_url) as redis,
        CallRegistry(2, redis, prefix=p) as one,
        CallRegistry(2, redis, prefix=p) as two,
    ):
        me = uuid.uuid4()
        first, second = OpenCall(me, None, noop), OpenCall(me, None, noop)
        await one.open(first)
        await two.open(second)
        with pytest.raises(TooManyCalls):
            await one.open(OpenCall(me, None, noop))
        await two.open(OpenCall(uuid.uuid4(), None, noop))  # another user is not affected
        await one.close(first)
        await one.open(OpenCall(me, None, noop))


async def test_a_crashed_process_frees_its_slots_after_the_lease(redis_url: str) -> None:
    """Slots no heartbeat renews expire: a dead process does not lock the user out for good."""
    p = prefix()
    me = uuid.uuid4()
    async with Redis.from_url(redis_url) as redis:
        crashed = CallRegistry(1, redis, prefix=p, lease_s=1.0)  # never entered: no heartbeat
        await crashed.open(OpenCall(me, None, noop))
        async with CallRegistry(1, redis, prefix=p, lease_s=1.0) as alive:
            with pytest.raises(TooManyCalls):
                await alive.open(OpenCall(me, None, noop))
            await asyncio.sleep(1.2)
            call = OpenCall(me, None, noop)
            await alive.open(call)
            await asyncio.sleep(1.5)  # its own slot is renewed by the heartbeat meanwhile
            with pytest.raises(TooManyCalls):
                await crashed.open(OpenCall(me, None, noop))


async def test_redis_down_admits_calls_against_the_local_count() -> None:
    """A Redis outage neither refuses callers nor lifts the limit within the process."""
    me = uuid.uuid4()
    got: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        got.append(event)

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        Redis.from_url(nowhere, socket_connect_timeout=0.5) as redis,
        CallRegistry(1, redis, prefix=prefix()) as registry,
    ):
        await registry.open(OpenCall(me, None, send))
        with pytest.raises(TooManyCalls):
            await registry.open(OpenCall(me, None, noop))
        await registry.push(me, {"type": "silvertalk.generation.updated"})
        assert got == [{"type": "silvertalk.generation.updated"}]


async def test_a_push_reaches_the_users_call_in_the_other_process(redis_url: str) -> None:
    """push() on one registry, and publish_to_user from a worker, reach the call held by another."""
    p = prefix()
    me = uuid.uuid4()
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(event: dict[str, Any]) -> None:
        got.put_nowait(event)

    async with (
        Redis.from_url(redis_url) as redis,
        CallRegistry(2, redis, prefix=p) as holder,
        CallRegistry(2, redis, prefix=p) as other,
        CallRegistry(2, redis, prefix=prefix()) as foreign,  # another service on the same Redis
    ):
        await holder.open(OpenCall(me, None, send))
        await other.push(me, {"type": "silvertalk.generation.updated", "n": 1})
        await foreign.push(me, {"type": "silvertalk.generation.updated", "n": 2})
        await notify.publish_to_user(redis, p, me, {"type": "silvertalk.generation.updated", "n": 3})
        await redis.publish(notify.user_channel(p, me), b"not json")  # skipped, logged
        await notify.publish_to_user(redis, p, uuid.uuid4(), {"type": "x"})  # nobody's call
        assert (await asyncio.wait_for(got.get(), 5))["n"] == 1
        assert (await asyncio.wait_for(got.get(), 5))["n"] == 3
        await asyncio.sleep(0.2)
        assert got.empty()


async def test_the_subscription_comes_back_after_redis_drops_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When Redis closes the subscriber's connection, it resubscribes and pushes flow again."""
    p = prefix()
    me = uuid.uuid4()
    got: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(event: dict[str, Any]) -> None:
        got.put_nowait(event)

    name = p.rstrip(":")  # names this test's connections, so only its own subscriber is killed
    async with (
        Redis.from_url(redis_url, client_name=name) as redis,
        CallRegistry(2, redis, prefix=p) as registry,
    ):
        await registry.open(OpenCall(me, None, send))
        clients = await redis.client_list(_type="pubsub")
        mine = [c["id"] for c in clients if c.get("name") == name]
        assert len(mine) == 1
        await redis.client_kill_filter(_id=mine[0])
        for _ in range(100):  # until resubscribed
            await registry.push(me, {"type": "ping"})
            try:
                await asyncio.wait_for(got.get(), 0.1)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("no push arrived after the subscription was dropped")
    assert "subscription lost" in caplog.text
