"""What a call keeps in the database: a Conversation row per call and a Turn per user or assistant turn.

Turns hold the text as actually spoken (the final transcript) or heard (a reply cut by barge-in is
stored as cut), their status and the per-turn timings. At hang-up the conversation gets `ended_at`
and a short summary: the caller's first sentences. `facts()` reads what the offline LLM and the
system prompt may use: today's events and recent memories of the user.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from pipeline.reminders import Reminder
from server.calendar import occurrences_between
from server.photostore import user_zone
from server.recurrence import local_day
from storage.models import Conversation, Memory, Turn, User

#: Bounds a pathological rule; a day holds far fewer events.
DAY_EVENTS = 20


class CallStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> None:
        self.sessions, self.user_id = sessions, user_id
        self.conversation_id: uuid.UUID | None = None
        self._first_user_text: list[tuple[str, str]] = []  # (item id, text) for the summary

    async def start(self, language: str) -> uuid.UUID:
        async with self.sessions() as s:
            row = Conversation(user_id=self.user_id, language=language)
            s.add(row)
            await s.commit()
            self.conversation_id = row.id
        return row.id

    async def add_turn(
        self, item_id: str, role: str, text: str, status: str, timings: Mapping[str, float | str]
    ) -> None:
        if self.conversation_id is None:
            return
        if role == "user" and text and sum(len(t) + 1 for _, t in self._first_user_text) < 200:
            self._first_user_text.append((item_id, text))
        async with self.sessions() as s:
            s.add(
                Turn(
                    conversation_id=self.conversation_id,
                    item_id=item_id,
                    role=role,
                    text=text[:20000],
                    status=status,
                    ended_at=datetime.now(UTC),
                    timings=dict(timings),
                )
            )
            await s.commit()

    async def truncate(self, item_id: str, text: str) -> None:
        if self.conversation_id is None:
            return
        async with self.sessions() as s:
            for turn in await self._turns(s, item_id):
                turn.text = text
            await s.commit()

    async def delete(self, item_id: str) -> None:
        """The item left the conversation (the client deleted it, or a rejoined turn replaced it)."""
        if self.conversation_id is None:
            return
        self._first_user_text = [(i, t) for i, t in self._first_user_text if i != item_id]
        async with self.sessions() as s:
            for turn in await self._turns(s, item_id):
                await s.delete(turn)
            await s.commit()

    async def _turns(self, s: AsyncSession, item_id: str) -> list[Turn]:
        """This call's stored turns for one item (one, or none yet)."""
        rows = await s.execute(
            select(Turn).where(
                col(Turn.conversation_id) == self.conversation_id, col(Turn.item_id) == item_id
            )
        )
        return list(rows.scalars())

    async def end(self) -> None:
        if self.conversation_id is None:
            return
        async with self.sessions() as s:
            row = await s.get(Conversation, self.conversation_id)
            if row is not None:
                row.ended_at = datetime.now(UTC)
                summary = " ".join(t for _, t in self._first_user_text).strip()
                row.summary = (summary[:300] + "…") if len(summary) > 300 else (summary or None)
                await s.commit()


async def load_user_facts(sessions: async_sessionmaker[AsyncSession], user: User) -> dict[str, Any]:
    """Today's events in the user's time zone (recurring ones expanded, as the home screen shows
    them) and their five most recent memories."""
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
    return {
        "today": now.date().isoformat(),
        "today_events": [
            {"title": e.title, "time": e.starts_at.astimezone(zone).strftime("%H:%M")} for e in events
        ],
        "memories": [{"title": m.title, "happened_on": m.happened_on, "place": m.place} for m in memories],
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
