"""Calendar API: events with optional RFC 5545 recurrence, listed or expanded over a time range."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import cpu, recurrence
from server.calendar import RULE_SLOTS, occurrences_between
from server.deps import CurrentUser, SessionDep, parse_uuid
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, calendar_time, fetch_page
from server.schemas.events import EventCreate, EventPublic, EventUpdate, OccurrenceList
from storage.models import Event, User

router = APIRouter(prefix="/v1", tags=["events"])

NOT_FOUND = HTTPException(404, "Event not found")
MAX_RANGE = timedelta(days=400)


def _unmangle_offset(value: object) -> object:
    """A "+09:00" typed into a URL unencoded arrives as " 09:00"; read it as the offset it was."""
    if isinstance(value, str) and len(value) > 6 and value[-6] == " " and value[-3] == ":":
        return f"{value[:-6]}+{value[-5:]}"
    return value


RangeTime = Annotated[AwareDatetime | None, BeforeValidator(_unmangle_offset), AfterValidator(calendar_time)]


def _local(event: Event, when: datetime | None) -> datetime | None:
    """A stored UTC time shown in the offset the event was written with."""
    return when.astimezone(timezone(timedelta(minutes=event.tz_offset_minutes))) if when else None


def to_public(event: Event) -> EventPublic:
    return EventPublic.model_validate(
        event, update={"starts_at": _local(event, event.starts_at), "ends_at": _local(event, event.ends_at)}
    )


async def get_own_event(session: AsyncSession, user_id: uuid.UUID, event_id: str) -> Event:
    event = await session.get(Event, parse_uuid(event_id))
    if event is None or event.user_id != user_id:
        raise NOT_FOUND
    return event


async def _checked_rrule(text: str | None, starts_at: datetime, user: User) -> str | None:
    """The canonical rule for an event starting at `starts_at`, or 422 saying what is wrong."""
    if text is None or not text.strip():
        return None
    zone = recurrence.event_zone(_offset_minutes(starts_at), user.time_zone, starts_at)
    try:
        # Off the event loop: proving a rule never occurs walks up to 400 years of periods.
        return await cpu.run("rrule", RULE_SLOTS, recurrence.normalize, text, starts_at.astimezone(zone))
    except recurrence.InvalidRule as e:
        raise HTTPException(422, str(e)) from None


def _offset_minutes(when: datetime) -> int:
    return int((when.utcoffset() or timedelta(0)).total_seconds() // 60)


@router.post("/events", status_code=201, response_model=EventPublic)
async def create_event(body: EventCreate, user: CurrentUser, session: SessionDep) -> EventPublic:
    event = Event(
        **body.model_dump(exclude={"rrule"}),
        user_id=user.id,
        tz_offset_minutes=_offset_minutes(body.starts_at),
        rrule=await _checked_rrule(body.rrule, body.starts_at, user),
    )
    session.add(event)
    await session.commit()
    return to_public(event)


@router.get("/events", response_model=Page[EventPublic] | OccurrenceList)
async def list_events(
    user: CurrentUser,
    session: SessionDep,
    start: RangeTime = None,
    end: RangeTime = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[EventPublic] | OccurrenceList:
    """With `start` and `end`: the occurrences overlapping [start, end), recurring events expanded,
    in time order. Without them: the events themselves, by start time, a page at a time."""
    if start is not None or end is not None:
        if start is None or end is None:
            raise HTTPException(422, "Give both start and end, or neither")
        if not start < end <= start + MAX_RANGE:
            raise HTTPException(422, f"end must be after start and at most {MAX_RANGE.days} days later")
        items, truncated = await occurrences_between(session, user, start, end)
        return OccurrenceList(items=items, truncated=truncated)
    rows, next_cursor = await fetch_page(
        session,
        sa.select(Event).where(col(Event.user_id) == user.id),
        key=col(Event.starts_at),
        id_col=col(Event.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].starts_at, row[0].id),
        descending=False,
    )
    return Page(items=[to_public(row[0]) for row in rows], next_cursor=next_cursor)


@router.get("/events/{event_id}", response_model=EventPublic)
async def get_event(event_id: str, user: CurrentUser, session: SessionDep) -> EventPublic:
    return to_public(await get_own_event(session, user.id, event_id))


@router.patch("/events/{event_id}", response_model=EventPublic)
async def update_event(
    event_id: str, body: EventUpdate, user: CurrentUser, session: SessionDep
) -> EventPublic:
    """Change the fields sent; times and the rule are checked again together."""
    event = await get_own_event(session, user.id, event_id)
    changes = body.model_dump(exclude_unset=True)
    starts_at: datetime = changes.get("starts_at") or event.starts_at.astimezone(
        timezone(timedelta(minutes=event.tz_offset_minutes))
    )
    ends_at = changes.get("ends_at", event.ends_at)
    if ends_at is not None and ends_at < starts_at:
        raise HTTPException(422, "ends_at must not be before starts_at")
    if "starts_at" in changes or "rrule" in changes:
        changes["rrule"] = await _checked_rrule(changes.get("rrule", event.rrule), starts_at, user)
        changes["tz_offset_minutes"] = _offset_minutes(starts_at)
    for name, value in changes.items():
        setattr(event, name, value)
    session.add(event)
    await session.commit()
    return to_public(event)


@router.delete("/events/{event_id}", status_code=204)
async def delete_event(event_id: str, user: CurrentUser, session: SessionDep) -> Response:
    event = await get_own_event(session, user.id, event_id)
    await session.delete(event)
    await session.commit()
    return Response(status_code=204)
