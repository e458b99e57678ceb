"""The jobs by name: `TASKS` maps a name to an async function of `(services, *ids)`.

`SWEEPS` are the periodic jobs and how often they run; the sweeps are what makes the database the
source of truth: whatever a lost message, a dead worker or a restart left unfinished, a sweep finds
in the tables and sends again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import Services

Task = Callable[..., Awaitable[None]]


async def chat_process(services: Services, message_id: str) -> None:
    from server.chat.responder import process

    await process(services, message_id)


async def generation_start(services: Services, generation_id: str) -> None:
    from server.generation.worker import runner

    await runner(services).start(generation_id)


async def generation_check(services: Services, generation_id: str, prediction: Any = None) -> None:
    from server.generation.worker import runner

    await runner(services).check(generation_id, prediction)


async def sweep_generations(services: Services) -> None:
    from server.generation.worker import runner

    await runner(services).sweep()


async def sweep_messages(services: Services) -> None:
    from server.chat.responder import sweep

    await sweep(services)


TASKS: dict[str, Task] = {
    "chat.process": chat_process,
    "generation.start": generation_start,
    "generation.check": generation_check,
    "sweep.generations": sweep_generations,
    "sweep.messages": sweep_messages,
}

#: Voice messages have someone waiting on them: their own queue, taken first.
QUEUES = {"chat.process": "chat"}
DEFAULT_QUEUE = "background"
PRIORITY = {"chat.process": 0}
DEFAULT_PRIORITY = 10


def sweeps(settings: Any) -> list[tuple[str, float]]:
    """(task, interval in seconds) for the scheduler."""
    every = settings.jobs_sweep_interval_s
    return [("sweep.generations", every), ("sweep.messages", every)]
