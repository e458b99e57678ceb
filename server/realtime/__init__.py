"""The realtime WebSocket gateway (OpenAI Realtime protocol) at /v1/realtime."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Services


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Load the speech engines and the call registry (filled in by the realtime work)."""
