"""AI pictures and videos from memories, through Replicate.

The flow: the generations router validates a request and stores a `queued` Generation row; the
worker (one per app) creates the Replicate prediction under a global concurrency cap, follows it by
webhook and by a polling safety net, downloads the output with our own SSRF-safe fetcher, and
stores it (an image as a new gallery photo linked to the memory; a video as an MP4 plus poster).

Exceptions::

    GenerationError
    ├── ReplicateError         the Replicate API refused or failed (`retryable` says whether to retry)
    └── OutputRefused          an output URL or file that we will not download or store
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from server import ServerError

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("silvertalk.generation")


class GenerationError(ServerError):
    """Root of generation failures. `str(e)` is plain words a person can read."""


class ReplicateError(GenerationError):
    """The Replicate API answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class OutputRefused(GenerationError):
    """An output we refuse to fetch or keep: a disallowed address, too big, too slow, or not media."""


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Build the Replicate client, the fetcher and the worker; resume unfinished generations.

    The worker is published as `services.generation`; it stops (tasks cancelled, rows left
    as they are, to be resumed by the next start) when the stack unwinds.
    """
    from server.generation.fetcher import OutputFetcher
    from server.generation.replicate import ReplicateClient
    from server.generation.worker import GenerationWorker

    settings = services.settings
    if settings.replicate_allow_loopback_outputs and settings.environment == "production":
        # Loopback outputs (and plain http to them) exist for the local fake Replicate only.
        raise RuntimeError("SILVERTALK_REPLICATE_ALLOW_LOOPBACK_OUTPUTS must be off in production")
    if settings.replicate_webhook_secret:
        from server.standard_webhooks import secret_key

        try:  # a malformed secret fails the start, clearly
            secret_key(settings.replicate_webhook_secret)
        except ValueError as e:
            raise ValueError(f"SILVERTALK_REPLICATE_WEBHOOK_SECRET: {e}") from None
    client = ReplicateClient(
        base_url=settings.replicate_base_url,
        token=settings.replicate_api_token,
        timeout_s=settings.replicate_timeout_s,
    )
    stack.push_async_callback(client.aclose)
    fetcher = OutputFetcher(settings)
    stack.push_async_callback(fetcher.aclose)
    worker = GenerationWorker(services, client, fetcher)
    services.generation = worker
    stack.push_async_callback(worker.stop)
    if client.configured:
        await worker.resume()
    else:
        log.info("generation: no SILVERTALK_REPLICATE_API_TOKEN, pictures and videos are off")
