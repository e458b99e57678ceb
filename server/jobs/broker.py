"""Dramatiq on Redis: the broker, one actor per task, and `QueueJobs` (what the server sends with).

Why Dramatiq (and not Celery, which the original system used): our code is asyncio through and
through (SQLAlchemy async sessions, httpx, the engines' async streams), and Dramatiq runs `async
def` actors on one event loop per worker process (its AsyncIO middleware), so a job is our own
coroutine with the worker's pooled database engine and loaded models. Celery tasks are synchronous:
each would need its own loop bridge. Dramatiq acknowledges a message only when the actor returns,
and the Redis broker gives a dead worker's unacknowledged messages to the others once its heartbeat
is `jobs_redelivery_s` old. What Dramatiq lacks is a scheduler: the sweeps are sent by APScheduler
in `python -m server.jobs scheduler` (runner.py); they are idempotent, so two schedulers are
harmless.

Keys live under `<redis_prefix>jobs:` (queues "chat" and "background").
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Middleware, Retries, TimeLimit
from dramatiq.middleware.asyncio import AsyncIO
from redis.exceptions import RedisError

from server.jobs import JobsUnavailable
from server.jobs.tasks import DEFAULT_PRIORITY, DEFAULT_QUEUE, PRIORITY, QUEUES, TASKS, Task
from server.settings import Settings

log = logging.getLogger("silvertalk.jobs")

#: Chance (per million broker commands) that a command also requeues dead workers' messages. Idle
#: consumers poll several times a second, so 5% finds a dead worker's jobs within about a second
#: of its heartbeat going stale; Dramatiq's default (0.1%) can take many minutes.
MAINTENANCE_CHANCE = 50_000
#: Longest a job may run (a video output download is the longest: `generation_fetch_timeout_s`).
TIME_LIMIT_MS = 15 * 60 * 1000
#: How long an idle consumer waits between polls at most: the queueing delay of a voice message.
POLL_MS = 100


def actor_name(task: str) -> str:
    return task.replace(".", "_")


def make_broker(settings: Settings, *, extra: list[Middleware] | None = None) -> RedisBroker:
    """A Redis broker under our prefix with every task declared as an actor on it."""
    middleware: list[Middleware] = [
        AgeLimit(),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        # Our tasks record failures in their rows; a retry is for what escaped them (database or
        # Redis hiccups), a few times.
        Retries(max_retries=3, min_backoff=1000, max_backoff=30_000),
        AsyncIO(),
        *(extra or []),
    ]
    broker = RedisBroker(
        url=settings.redis_url,
        namespace=f"{settings.redis_prefix}jobs",
        heartbeat_timeout=int(settings.jobs_redelivery_s * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
        middleware=middleware,
    )
    for task, fn in TASKS.items():
        dramatiq.actor(  # type: ignore[call-overload]
            _actor(task, fn),
            broker=broker,
            actor_name=actor_name(task),
            queue_name=QUEUES.get(task, DEFAULT_QUEUE),
            priority=PRIORITY.get(task, DEFAULT_PRIORITY),
        )
    return broker


def _actor(task: str, fn: Task) -> Any:
    async def run(*args: Any) -> None:
        from server.jobs.runner import worker_services

        await fn(await worker_services(), *args)

    run.__name__ = actor_name(task)
    run.__qualname__ = run.__name__
    return run


class QueueJobs:
    """Sends jobs to the Redis queue (the send itself is a blocking Redis call: off the loop)."""

    def __init__(self, settings: Settings, broker: RedisBroker | None = None) -> None:
        self.broker = broker or make_broker(settings)

    def send_now(self, task: str, *args: Any) -> None:
        """Blocking send (the scheduler's thread)."""
        try:
            self.broker.get_actor(actor_name(task)).send(*args)
        except RedisError as e:
            raise JobsUnavailable(f"the job queue is unreachable ({type(e).__name__})") from e

    async def send(self, task: str, *args: Any) -> None:
        await asyncio.to_thread(self.send_now, task, *args)

    def close(self) -> None:
        self.broker.close()
