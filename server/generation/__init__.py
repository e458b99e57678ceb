"""AI pictures and videos from memories, through Replicate."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Services


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Start the generation worker (filled in by the generation work)."""
