"""Calendar API schemas: events as written and shown, and expanded occurrences.

Times are ISO 8601 with an offset; a naive time is refused (422) because "09:00" means nothing
without knowing where. Responses show times in the offset the event was written with.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, model_validator
from sqlmodel import Field, SQLModel

from server.schemas.common import calendar_time

REMIND_MAX_MINUTES = 4 * 7 * 24 * 60
# A time with an offset, in the years a calendar needs (1900-2200): no overflow at year 1 or 9999.
EventTime = Annotated[AwareDatetime, AfterValidator(calendar_time)]


class EventBase(SQLModel):
    title: str = Field(min_length=1, max_length=200)
    starts_at: EventTime
    ends_at: EventTime | None = None
    all_day: bool = False
    rrule: str | None = Field(default=None, max_length=500)  # RFC 5545 RRULE, e.g. FREQ=WEEKLY;BYDAY=MO
    remind_minutes_before: int | None = Field(default=None, ge=0, le=REMIND_MAX_MINUTES)
    notes: str | None = Field(default=None, max_length=4000)


class EventCreate(EventBase):
    @model_validator(mode="after")
    def _ends_after_start(self) -> EventCreate:
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError("ends_at must not be before starts_at")
        return self


class EventUpdate(SQLModel):
    """PATCH body: only the fields sent change; `rrule: null` makes the event one-off."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    starts_at: EventTime | None = None
    ends_at: EventTime | None = None
    all_day: bool | None = None
    rrule: str | None = Field(default=None, max_length=500)
    remind_minutes_before: int | None = Field(default=None, ge=0, le=REMIND_MAX_MINUTES)
    notes: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="before")
    @classmethod
    def _required_stay_set(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("title", "starts_at", "all_day"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null")
        return data


class EventPublic(EventBase):
    id: uuid.UUID
    created_at: datetime


class OccurrencePublic(SQLModel):
    """One occurrence of an event in a range (a one-off event has exactly one)."""

    event_id: uuid.UUID
    title: str
    starts_at: datetime
    ends_at: datetime | None
    all_day: bool
    recurring: bool
    rrule: str | None
    remind_minutes_before: int | None
    notes: str | None


class OccurrenceList(SQLModel):
    items: list[OccurrencePublic]
    truncated: bool = False  # True when the range held more than the cap of occurrences
