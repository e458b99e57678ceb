"""AI pictures and videos from memories, through Replicate.

The flow: the generations router validates a request, stores a `queued` Generation row and sends a
job; job workers (`server.jobs`) create the Replicate prediction under a global concurrency cap,
follow it by webhook and by the periodic sweep, download the output with our own SSRF-safe
fetcher, and store it (an image as a new gallery photo linked to the memory; a video as an MP4 plus poster).

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
    """Check the settings and publish the runner as `services.generation`.

    The work itself runs as jobs (`server.jobs`): the router sends "generation.start", the webhook
    "generation.check", and the sweeps follow what is left; nothing is held in this process.
    """
    from server.generation.worker import runner

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
    runner(services)
    if not settings.replicate_api_token:
        log.info("generation: no SILVERTALK_REPLICATE_API_TOKEN, pictures and videos are off")
