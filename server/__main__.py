"""`python -m server`: serve the app with uvicorn, configured by SILVERTALK_* variables.

The first SIGTERM or SIGINT drains before uvicorn shuts down (see `server.app.drain`): uvicorn on
its own would close every open call with 1012 at once, cutting callers off mid-sentence. A second
signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from server import allocator, logs
from server.app import create_app, drain
from server.settings import Settings

log = logging.getLogger("silvertalk")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How we run uvicorn, shared by `python -m server`, the live-server tests and the benchmarks.

    The sans-I/O websockets protocol with permessage-deflate off: base64 audio compresses poorly
    and deflate roughly doubled the per-frame CPU in `python -m bench calls`.
    """
    return {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": ws_max_size(settings),
        "timeout_graceful_shutdown": 10,
        # The app decides whose X-Forwarded-For to believe (SILVERTALK_TRUSTED_PROXIES); uvicorn's
        # default would believe any client connecting from 127.0.0.1.
        "proxy_headers": False,
    }


def ws_max_size(settings: Settings) -> int:
    """uvicorn's frame limit: twice the gateway's message limit. A message over the gateway's limit
    then reaches the gateway, which says why in an `error` event before closing with 1009; only
    one over twice the limit is cut by uvicorn (1009, no event)."""
    return 2 * settings.realtime_max_message_bytes


class DrainingServer(uvicorn.Server):
    """uvicorn's server, except that the first exit signal drains the app before shutting down."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it runs between two bytecodes of the loop's thread, so it only
        # schedules the drain on the loop.
        if self._draining is not None or not self.started or self._loop is None:
            super().handle_exit(sig, frame)  # second signal, or not serving yet: stop now
            return
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain_then_exit(sig))

    async def _drain_then_exit(self, sig: int) -> None:
        log.info("signal %d: draining (signal again to stop at once)", sig)
        try:
            await drain(self.app)
        except Exception:  # whatever went wrong, the process must still stop
            log.exception("draining failed; shutting down")
        super().handle_exit(sig, None)


def main() -> None:
    settings = Settings()
    allocator.limit_arenas(settings.malloc_arena_max)  # before any thread starts
    logs.configure(settings.log_level)
    supervisor = None
    if settings.redis_url and settings.jobs_workers > 0:
        # One command serves everything: the job workers and the scheduler run beside us.
        from server.jobs.runner import Supervisor
        from storage import db

        if settings.migrate_on_start:
            # Before the children start, so that no two processes migrate the database at once.
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            db.migrate(settings.resolved_database_url)
        supervisor = Supervisor(["worker"] * settings.jobs_workers + ["scheduler"])
        supervisor.start()
    try:
        app = create_app(settings)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            **uvicorn_options(settings),
        )
        DrainingServer(config, app).run()
    finally:
        if supervisor is not None:
            supervisor.stop()


if __name__ == "__main__":
    main()
