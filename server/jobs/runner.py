"""The job processes: `worker` (Dramatiq consumers), `scheduler` (the sweeps), and `Supervisor`.

A worker process opens its own services (database, Redis, media) on Dramatiq's event loop the
first time a job needs them, and loads the speech engines on the first voice message. SIGTERM
stops it gracefully (jobs in progress finish); SIGKILL loses nothing either: the messages it held
are delivered again after `jobs_redelivery_s`.

`Supervisor` is how `python -m server` runs the queue on one machine: it starts `jobs_workers`
worker processes and one scheduler, starts again any that exit, and stops them with the server.
A server that dies without stopping them (SIGKILL, a crash) takes them along: each child is told
its server's pid (`PARENT_ENV`) and stops gracefully, as on SIGTERM, once that parent is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from server.settings import Settings

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.jobs")

#: Set by `Supervisor` for its children: the pid of the server they belong to.
PARENT_ENV = "SILVERTALK_JOBS_PARENT_PID"

_state: dict[str, Any] = {}


async def worker_services() -> Services:
    """This worker process's services, opened on first use (on Dramatiq's event loop)."""
    lock: asyncio.Lock = _state.setdefault("lock", asyncio.Lock())
    async with lock:
        if "services" not in _state:
            from server.app import open_services
            from server.jobs.inline import InlineJobs

            stack = AsyncExitStack()
            services = await open_services(_state["settings"], stack)
            # Jobs sent from a job (the next queued generation) go back to the queue.
            services.jobs = _state.get("jobs") or InlineJobs(services)
            _state["stack"], _state["services"] = stack, services
            if services.settings.preload_engines:
                engines = await services.get_engines()
                stack.push_async_callback(engines.aclose)
    found: Services = _state["services"]
    return found


class _CloseServices(Middleware):
    """Closes the process's services after the last job, while the event loop still runs."""

    def after_worker_shutdown(self, broker: Any, worker: Any) -> None:
        stack: AsyncExitStack | None = _state.pop("stack", None)
        if stack is not None:
            get_event_loop_thread().run_coroutine(stack.aclose())  # type: ignore[union-attr]


def run_worker(settings: Settings) -> None:
    """Consume jobs until SIGTERM or SIGINT."""
    from dramatiq import Worker

    from server.jobs.broker import POLL_MS, QueueJobs, make_broker

    if not settings.redis_url:
        raise SystemExit("python -m server.jobs worker needs SILVERTALK_REDIS_URL")
    broker = make_broker(settings, extra=[_CloseServices()])
    jobs = QueueJobs(settings, broker)
    _state.update(settings=settings, jobs=jobs)
    worker = Worker(broker, worker_threads=settings.jobs_worker_threads, worker_timeout=POLL_MS)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    # Open the services (and load the engines) now, not in the first job: a message's wait.
    get_event_loop_thread().run_coroutine(worker_services())  # type: ignore[union-attr]
    log.info("jobs worker %s ready: %d threads", broker.broker_id, settings.jobs_worker_threads)
    _wait_for_stop(stop)
    worker.stop(timeout=30_000)
    broker.close()


def run_scheduler(settings: Settings) -> None:
    """Send the sweeps on their intervals until SIGTERM or SIGINT."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from server.jobs.broker import QueueJobs
    from server.jobs.tasks import sweeps

    if not settings.redis_url:
        raise SystemExit("python -m server.jobs scheduler needs SILVERTALK_REDIS_URL")
    jobs = QueueJobs(settings)
    scheduler = BackgroundScheduler()
    for name, every in sweeps(settings):
        scheduler.add_job(_send_logged, "interval", args=[jobs, name], seconds=every, coalesce=True)
        scheduler.add_job(_send_logged, args=[jobs, name])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scheduler.start()
    _wait_for_stop(stop)
    scheduler.shutdown(wait=False)
    jobs.close()


def _wait_for_stop(stop: threading.Event) -> None:
    """Until SIGTERM or SIGINT, or, for a supervised child, until its server is gone (it was killed
    and this process was handed to init: nothing would ever stop it)."""
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit():
        stop.wait()
        return
    while not stop.wait(1.0):
        if os.getppid() != int(parent):
            log.warning("jobs: the server (pid %s) is gone; stopping", parent)
            return


def _send_logged(jobs: Any, name: str) -> None:
    try:
        jobs.send_now(name)
    except Exception as e:  # Redis away: the next interval tries again
        log.warning("scheduler: could not send %s: %s", name, e)


class Supervisor:
    """Child processes `python -m server.jobs <role>`, restarted when they exit, stopped on `stop`."""

    def __init__(self, roles: list[str]) -> None:
        self.roles = roles
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(roles)
        self.next_start = [0.0] * len(roles)  # a child that keeps dying is started less often
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jobs-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self, i: int) -> None:
        # The server has migrated the database already; its settings reach the child through
        # the environment (and .env), as they reached the server.
        env = os.environ | {"SILVERTALK_MIGRATE_ON_START": "false", PARENT_ENV: str(os.getpid())}
        self.procs[i] = subprocess.Popen([sys.executable, "-m", "server.jobs", self.roles[i]], env=env)

    def _watch(self) -> None:
        started = [0.0] * len(self.roles)
        delay = [1.0] * len(self.roles)
        while not self._stop.is_set():
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is None:
                    continue
                if proc is not None and self.next_start[i] == 0.0:
                    # Died soon after starting: back off (1 s doubling to a minute); else at once.
                    delay[i] = min(delay[i] * 2, 60.0) if now - started[i] < 10 else 1.0
                    self.next_start[i] = now + delay[i]
                    role, code = self.roles[i], proc.returncode
                    log.warning("jobs %s exited (%s); starting again in %.0f s", role, code, delay[i])
                if now >= self.next_start[i]:
                    self._spawn(i)
                    started[i], self.next_start[i] = now, 0.0
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 35
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
