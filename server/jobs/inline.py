"""Jobs inline in the server process: the embedded set-up, where there may be no Redis.

The same tasks run as asyncio tasks on the server's event loop (their blocking work is already off
the loop, in the engines' threads), with the sweeps on an APScheduler timer. The first sweep runs
at start, so work a previous process left unfinished is picked up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from server.jobs.tasks import TASKS, sweeps

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.jobs")


class InlineJobs:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._closing = False

    async def send(self, task: str, *args: Any) -> None:
        if self._closing:
            return  # shutting down: the row stays unfinished and the next start's sweep takes it
        run = asyncio.create_task(self._run(task, *args), name=f"job-{task}")
        self._tasks.add(run)
        run.add_done_callback(self._tasks.discard)

    async def _run(self, task: str, *args: Any) -> None:
        try:
            await TASKS[task](self.services, *args)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s%r failed", task, args)

    def start_sweeps(self) -> None:
        scheduler = AsyncIOScheduler()
        for name, every in sweeps(self.services.settings):
            scheduler.add_job(
                self.send, "interval", args=[name], seconds=every, coalesce=True, max_instances=1
            )
            # And once now: what the last process left unfinished.
            scheduler.add_job(self.send, args=[name])
        scheduler.start()
        self._scheduler = scheduler

    async def aclose(self) -> None:
        self._closing = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
