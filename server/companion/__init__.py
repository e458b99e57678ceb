"""The companion around a call: its tools over the caller's own rows, memories and a summary
written after the call, and alerts to a caregiver when the caller speaks of an emergency.

Modules: `call` (`CallCompanion`, what the gateway builds per call), `tools` (the `ToolRunner`
the gateway hands the conversation core), `arguments` (their validation), `search` (memories by
relevance), `summary` (`summarize_conversation` at hang-up), `alerts` (stored alerts and the
signed caregiver webhook).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Services


async def start(services: Services, stack: AsyncExitStack) -> None:
    """Create the alert sender (`services.alerts`, resending alerts left pending) and the after-call
    summary queue (`services.summaries`).

    A caregiver URL without a secret, or a malformed secret, fails the start with a clear message.
    """
    from server.companion.alerts import AlertSender
    from server.companion.summary import SummaryQueue

    sender = AlertSender(services.settings, services.sessions)
    services.alerts = sender
    stack.push_async_callback(sender.aclose)
    await sender.resume()
    summaries = SummaryQueue(services.sessions)
    services.summaries = summaries
    stack.push_async_callback(summaries.aclose)
