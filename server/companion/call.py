"""`CallCompanion`: everything the companion adds to one call, for the gateway to hand on.

The gateway builds one when a call starts and gives the conversation core `tools` (a
`pipeline.tools.ToolRunner`) with `TOOL_SPECS` in the context. The core itself answers words of
emergency calmly (`CallConfig.emergency_number`, whatever the LLM); the gateway passes each final
user transcript to `emergency_reply`, which stores the alert and has the caregiver told. It asks
`reminders()` for the call's `ReminderClock` and calls `after_call` at hang-up. None of these
block the call on the network: the alert is written to the database and delivered in the
background, and the summary runs in the background after the socket closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline import emergency
from pipeline.engines.base import LanguageModel
from pipeline.prompts import lang_key
from pipeline.reminders import ReminderClock
from server.companion.summary import CallSummary
from server.companion.tools import CompanionTools, Push
from server.photostore import user_zone
from server.realtime.store import load_reminders
from storage.models import User

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.companion")

#: The same kind of emergency again within this many seconds of a call is not a new alert.
ALERT_REPEAT_S = 120.0


class CallCompanion:
    """The companion's part of one call for `user`, speaking `language`."""

    def __init__(self, services: Services, user: User, *, language: str, push: Push | None = None) -> None:
        self.services, self.user, self.language = services, user, language
        self.tools = CompanionTools(services, user, language=language, push=push)
        self.conversation_id: uuid.UUID | None = None
        self.alerts: list[uuid.UUID] = []
        self._alerted: dict[str, float] = {}  # kind -> monotonic time of its last alert

    def set_language(self, language: str) -> None:
        """The session's language changed: questions and emergency words follow it."""
        self.language = language
        self.tools.language = lang_key(language)

    async def emergency_reply(self, transcript: str) -> str | None:
        """When `transcript` holds words of emergency: store the alert (the caregiver is told in the
        background) and return the calm words to say now; else None. Never raises."""
        found = emergency.detect(transcript)
        if found is None:
            return None
        now = time.monotonic()
        repeated = now - self._alerted.get(found.kind, -ALERT_REPEAT_S) < ALERT_REPEAT_S
        self._alerted[found.kind] = now
        sender = self.services.alerts
        try:
            if repeated or sender is None:  # said again: the family has just been told
                return emergency.reply(self.language, self.services.settings.emergency_number)
            alert = await sender.raise_alert(
                self.user.id,
                kind=found.kind,
                text=transcript,
                language=self.language,
                conversation_id=self.conversation_id,
            )
            self.alerts.append(alert.id)
        except Exception:  # the words still matter more than the record of them
            log.exception("could not store the emergency alert of user %s", self.user.id)
        return emergency.reply(self.language, self.services.settings.emergency_number)

    async def reminders(self) -> ReminderClock:
        """Today's reminders (recurring ones included) as a clock for this call."""
        found = await load_reminders(self.services.sessions, self.user)
        return ReminderClock(found, self.language, datetime.now(user_zone(self.user.time_zone)))

    def after_call(self, llm: LanguageModel | None) -> asyncio.Task[CallSummary | None] | None:
        """Summarise the call and save its new memories in the background (see `summary`)."""
        queue = self.services.summaries
        if queue is None or self.conversation_id is None:
            return None
        return queue.submit(llm, self.conversation_id)
