"""Memories API schemas: a remembered story with when, where, who, and the user's own photos.

`happened_on` is "YYYY", "YYYY-MM" or "YYYY-MM-DD": older people often remember only the year.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import field_validator, model_validator
from sqlmodel import Field, SQLModel

from server.schemas.photos import PhotoPublic

Source = Literal["manual", "conversation"]
MAX_PEOPLE = 50
MAX_PHOTOS = 50
_HAPPENED_ON = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def check_happened_on(value: str | None) -> str | None:
    if value is None:
        return None
    match = _HAPPENED_ON.match(value)
    if not match:
        raise ValueError('happened_on must be "YYYY", "YYYY-MM" or "YYYY-MM-DD"')
    year, month, day = (int(g) if g else None for g in match.groups())
    assert year is not None
    try:
        date(year, month or 1, day or 1)
    except ValueError as e:
        raise ValueError(f"happened_on {value!r} is not a real date") from e
    if year < 1800:
        raise ValueError("happened_on is too far in the past")
    return value


def check_people(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    people = [name.strip() for name in value]
    if any(not name or len(name) > 100 for name in people):
        raise ValueError("each person is a name of 1-100 characters")
    return list(dict.fromkeys(people))  # drop repeats, keep order


class MemoryBase(SQLModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=20000)
    happened_on: str | None = Field(default=None, max_length=10)
    place: str | None = Field(default=None, max_length=200)
    people: list[str] = Field(default_factory=list, max_length=MAX_PEOPLE)
    source: Source = "manual"

    _happened_on = field_validator("happened_on")(check_happened_on)
    _people = field_validator("people")(check_people)


class MemoryCreate(MemoryBase):
    photo_ids: list[uuid.UUID] = Field(default_factory=list, max_length=MAX_PHOTOS)


class MemoryUpdate(SQLModel):
    """PATCH body: only the fields sent change; `photo_ids` replaces the photos (in its order)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=20000)
    happened_on: str | None = Field(default=None, max_length=10)
    place: str | None = Field(default=None, max_length=200)
    people: list[str] | None = Field(default=None, max_length=MAX_PEOPLE)
    source: Source | None = None
    photo_ids: list[uuid.UUID] | None = Field(default=None, max_length=MAX_PHOTOS)

    _happened_on = field_validator("happened_on")(check_happened_on)
    _people = field_validator("people")(check_people)

    @model_validator(mode="before")
    @classmethod
    def _required_stay_set(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("title", "body", "people", "source", "photo_ids"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} cannot be null")
        return data


class MemoryPublic(MemoryBase):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    photos: list[PhotoPublic]
