"""The user's calendar as occurrences: events overlapping a time range, recurring ones expanded.

Shared by the events API, the home screen, a call's facts and reminders, and the companion's
`list_events` tool. Expansion is CPU work: it runs in `RULE_SLOTS` bounded thread slots (shared
with rule checks) within `EXPAND_BUDGET_S` per request, and says when it was cut.
"""

from __future__ import annotations

import time
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import cpu, recurrence
from server.schemas.events import OccurrencePublic
from storage.models import Event, User

# Rule work runs in at most this many threads at once per process, and one request expands for at
# most this long before it answers with what it has (`truncated`): a user with thousands of rules
# slows only their own answer.
RULE_SLOTS = 2
EXPAND_BUDGET_S = 1.0


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

    def expand_all() -> tuple[list[OccurrencePublic], bool]:
        found: list[OccurrencePublic] = []
        deadline = time.monotonic() + EXPAND_BUDGET_S
        for event in events:
            if time.monotonic() > deadline:
                return found, True
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
        return found, False

    found, out_of_time = await cpu.run("rrule", RULE_SLOTS, expand_all)
    found.sort(key=lambda o: (o.starts_at, str(o.event_id)))
    return found[:limit], out_of_time or len(found) > limit
