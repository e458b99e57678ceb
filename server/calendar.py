"""The user's calendar as occurrences: events overlapping a time range, recurring ones expanded.

Shared by the events API, the home screen, a call's facts and the companion's `list_events` tool.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import recurrence
from server.schemas.events import OccurrencePublic
from storage.models import Event, User


async def occurrences_between(
    session: AsyncSession, user: User, start: datetime, end: datetime, limit: int = recurrence.MAX_OCCURRENCES
) -> tuple[list[OccurrencePublic], bool]:
    """The user's occurrences overlapping [start, end) in time order, and whether the cap cut them."""
    stmt = sa.select(Event).where(
        col(Event.user_id) == user.id,
        col(Event.starts_at) < end,
        sa.or_(
            col(Event.rrule).is_not(None),
            col(Event.starts_at) >= start,
            col(Event.ends_at) > start,
        ),
    )
    events = (await session.execute(stmt)).scalars().all()

    def expand_all() -> list[OccurrencePublic]:
        found: list[OccurrencePublic] = []
        for event in events:
            zone = recurrence.event_zone(event.tz_offset_minutes, user.time_zone, event.starts_at)
            for occ in recurrence.expand(
                event.rrule,
                event.starts_at.astimezone(zone),
                event.ends_at.astimezone(zone) if event.ends_at else None,
                start,
                end,
                limit + 1,
            ):
                found.append(
                    OccurrencePublic(
                        event_id=event.id,
                        title=event.title,
                        starts_at=occ.starts_at,
                        ends_at=occ.ends_at,
                        all_day=event.all_day,
                        recurring=event.rrule is not None,
                        rrule=event.rrule,
                        remind_minutes_before=event.remind_minutes_before,
                        notes=event.notes,
                    )
                )
        found.sort(key=lambda o: (o.starts_at, str(o.event_id)))
        return found

    found = await asyncio.to_thread(expand_all)
    return found[:limit], len(found) > limit
