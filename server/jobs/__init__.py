"""Background jobs: voice messages, pictures and videos, and the periodic sweeps.

A job is a named async function of `(services, *args)` in `tasks.TASKS`; its arguments are ids
(strings), because PostgreSQL (or SQLite) holds every job's state and the queue only carries
"look at this row now". Every task claims its row with a conditional UPDATE before working and
writes its result only while it still holds the row, so a job delivered twice, or re-sent by a
sweep, does its work once.

Where jobs run:

- With `SILVERTALK_REDIS_URL`: on Dramatiq (`broker.py`), in worker processes
  (`python -m server.jobs worker`, scale by running more) plus one scheduler
  (`python -m server.jobs scheduler`) that sends the sweeps. Messages are acknowledged when the
  task returns, so a worker killed mid-job has its job delivered again. `python -m server` starts
  and supervises `jobs_workers` of them itself (`runner.py`); compose.yaml runs them as services.
- Without Redis (the embedded `make run`): inline, as tasks on the server's own event loop
  (`inline.py`), with the same sweeps on a timer. Nothing is lost in a crash: the sweeps at the
  next start find unfinished rows and run them again.

Exceptions::

    JobError
    └── JobsUnavailable    the queue could not take a job (Redis down); nothing was sent
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.jobs")


class JobError(Exception):
    """Root of job failures."""


class JobsUnavailable(JobError):
    """The queue could not take a job; the caller should answer 503 and store nothing new."""


class Jobs(Protocol):
    """Where the server sends work. `send` returns once the job is queued (not done)."""

    async def send(self, task: str, *args: Any) -> None: ...


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Publish `services.jobs`: the Dramatiq queue with Redis, inline jobs without."""
    jobs: Any
    if services.settings.redis_url:
        from server.jobs.broker import QueueJobs

        jobs = QueueJobs(services.settings)
        stack.callback(jobs.close)
    else:
        from server.jobs.inline import InlineJobs

        jobs = InlineJobs(services)
        stack.push_async_callback(jobs.aclose)
        jobs.start_sweeps()
    services.jobs = jobs


def get_jobs(services: Services) -> Jobs:
    """The app's job sender (set by `start`)."""
    if services.jobs is None:
        raise RuntimeError("server.jobs.start has not run in this process")
    return services.jobs
