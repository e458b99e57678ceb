"""What a call keeps in the database: a Conversation row per call and a Turn per user or assistant turn.

Turns hold the text as actually spoken (the final transcript) or heard (a reply cut by barge-in is
stored as cut), their status and the per-turn timings. At hang-up the conversation gets `ended_at`
and a short summary: the caller's first sentences. `facts()` reads what the offline LLM and the
system prompt may use: today's events and recent memories of the user.

The database may go away for a while in the middle of a call (a failover, a restart, a cut link).
Every write after `start()` is therefore retried with backoff while the database is unreachable,
for up to `retry_for_s` of continuous failure, so finished turns are stored once it is back; the
caller (the gateway's saver, one write at a time) keeps them in order. Writes are idempotent, so
a retry after a commit whose answer was lost stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from pipeline.reminders import Reminder
from server.calendar import occurrences_between
from server.companion.recall import recent_calls, recent_messages
from server.photostore import user_zone
from server.recurrence import local_day
from storage.models import Conversation, Memory, Turn, User

#: Bounds a pathological rule; a day holds far fewer events.
DAY_EVENTS = 20

log = logging.getLogger(__name__)

#: The longest wait between two tries of a write, seconds.
MAX_BACKOFF_S = 5.0


def unreachable(e: BaseException) -> bool:
    """Is this the database being unreachable (worth retrying), not a bad write?"""
    if isinstance(e, sa_exc.DBAPIError):
        return isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError) or e.connection_invalidated
    return isinstance(e, sa_exc.TimeoutError | OSError | TimeoutError)


class CallStore:
    """One call's conversation in the database. `start()` first; the other writes retry (see above)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        user_id: uuid.UUID,
        *,
        retry_for_s: float = 120.0,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self.sessions, self.user_id = sessions, user_id
        self.retry_for_s, self.attempt_timeout_s = retry_for_s, attempt_timeout_s
        self.conversation_id: uuid.UUID | None = None
        self._first_user_text: list[tuple[str, str]] = []  # (item id, text) for the summary
        self._failing_since: float | None = None  # the database has been unreachable since (monotonic)
        #: Writes given up on (the database stayed away longer than `retry_for_s`).
        self.dropped = 0

    async def start(self, language: str) -> uuid.UUID:
        """Create the conversation row (one try: the call needs the database to begin at all)."""
        async with self.sessions() as s:
            row = Conversation(user_id=self.user_id, language=language)
            s.add(row)
            await s.commit()
            self.conversation_id = row.id
        return row.id

    async def _write(self, what: str, change: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Apply `change` in a fresh session and commit, retrying while the database is unreachable.

        Gives up (logs, counts `dropped`) once the database has failed for `retry_for_s` in a row;
        a failure that is not about reachability (a bad row) is logged and not retried.
        """
        delay = 0.2
        while True:
            try:
                async with asyncio.timeout(self.attempt_timeout_s), self.sessions() as s:
                    await change(s)
                    await s.commit()
            except Exception as e:
                if not unreachable(e):
                    log.exception("could not store %s", what)
                    self.dropped += 1
                    return
                now = time.monotonic()
                self._failing_since = self._failing_since or now
                if now - self._failing_since >= self.retry_for_s:
                    log.error("database unreachable for %.0f s: %s is lost (%s)", self.retry_for_s, what, e)
                    self.dropped += 1
                    return
                log.warning("database unreachable, retrying %s in %.1f s: %s", what, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if self._failing_since is not None:
                log.info("database back: stored %s", what)
                self._failing_since = None
            return

    async def add_turn(
        self, item_id: str, role: str, text: str, status: str, timings: Mapping[str, float | str]
    ) -> None:
        if self.conversation_id is None:
            return
        if role == "user" and text and sum(len(t) + 1 for _, t in self._first_user_text) < 200:
            self._first_user_text.append((item_id, text))
        turn = Turn(
            conversation_id=self.conversation_id,
            item_id=item_id,
            role=role,
            text=text[:20000],
            status=status,
            ended_at=datetime.now(UTC),
            timings=dict(timings),
        )

        async def change(s: AsyncSession) -> None:
            await s.merge(turn)  # by primary key: a retry after a lost commit answer updates, not adds

        await self._write(f"the {role} turn {item_id}", change)

    async def truncate(self, item_id: str, text: str) -> None:
        if self.conversation_id is None:
            return

        async def change(s: AsyncSession) -> None:
            for turn in await self._turns(s, item_id):
                turn.text = text

        await self._write(f"the truncation of {item_id}", change)

    async def delete(self, item_id: str) -> None:
        """The item left the conversation (the client deleted it, or a rejoined turn replaced it)."""
        if self.conversation_id is None:
            return
        self._first_user_text = [(i, t) for i, t in self._first_user_text if i != item_id]

        async def change(s: AsyncSession) -> None:
            for turn in await self._turns(s, item_id):
                await s.delete(turn)

        await self._write(f"the deletion of {item_id}", change)

    async def _turns(self, s: AsyncSession, item_id: str) -> list[Turn]:
        """This call's stored turns for one item (one, or none yet)."""
        rows = await s.execute(
            select(Turn).where(
                col(Turn.conversation_id) == self.conversation_id, col(Turn.item_id) == item_id
            )
        )
        return list(rows.scalars())

    async def end(self, habits: dict[str, Any] | None = None) -> None:
        """The call is over: its end time and first words on the conversation, and (`habits`) how
        the caller pauses on their user row, for their next call."""
        if self.conversation_id is None:
            return
        summary = " ".join(t for _, t in self._first_user_text).strip()
        ended_at = datetime.now(UTC)

        async def change(s: AsyncSession) -> None:
            row = await s.get(Conversation, self.conversation_id)
            if row is not None:
                row.ended_at = ended_at
                row.summary = (summary[:300] + "…") if len(summary) > 300 else (summary or None)
            if habits is not None and (user := await s.get(User, self.user_id)) is not None:
                user.speaker_habits = habits

        await self._write("the end of the call", change)


async def load_user_facts(sessions: async_sessionmaker[AsyncSession], user: User) -> dict[str, Any]:
    """Today's events in the user's time zone (recurring ones expanded, as the home screen shows
    them), their five most recent memories, and what was said lately: the summaries of their last
    calls and the last voice messages (`server.companion.recall`), so a call and a voice message
    each know what the other said."""
    zone = user_zone(user.time_zone)
    now = datetime.now(zone)
    start, end = local_day(now.date(), zone)
    async with sessions() as s:
        events, _ = await occurrences_between(s, user, start, end, limit=DAY_EVENTS)
        memories = (
            (
                await s.execute(
                    select(Memory)
                    .where(col(Memory.user_id) == user.id)
                    .order_by(col(Memory.created_at).desc())
                    .limit(5)
                )
            )
            .scalars()
            .all()
        )
        talks = await recent_calls(s, user.id, zone, now)
        messages = await recent_messages(s, user.id, now)
    return {
        "today": now.date().isoformat(),
        "today_events": [
            {"title": e.title, "time": e.starts_at.astimezone(zone).strftime("%H:%M")} for e in events
        ],
        "memories": [{"title": m.title, "happened_on": m.happened_on, "place": m.place} for m in memories],
        "recent_calls": talks,
        "recent_messages": messages,
    }


async def load_reminders(sessions: async_sessionmaker[AsyncSession], user: User) -> list[Reminder]:
    """Today's occurrences in the user's zone as reminders for the call (recurring ones included)."""
    zone = user_zone(user.time_zone)
    start, end = local_day(datetime.now(zone).date(), zone)
    async with sessions() as s:
        events, _ = await occurrences_between(s, user, start, end, limit=DAY_EVENTS)
    return [
        Reminder(e.title, e.starts_at.astimezone(zone), e.remind_minutes_before, e.all_day) for e in events
    ]
