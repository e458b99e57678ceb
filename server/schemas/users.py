"""The user's profile as the API shows it (`UserPublic`) and changes it (`UserUpdate`)."""

from __future__ import annotations

import functools
import uuid
import zoneinfo
from datetime import UTC, datetime
from typing import Literal

from pydantic import field_validator, model_validator
from sqlmodel import Field, SQLModel

from storage.models import UserBase

Language = Literal["ko", "en"]


@functools.cache
def _zones() -> frozenset[str]:
    # Membership in the IANA list, not ZoneInfo(key): that would also accept odd file paths.
    return frozenset(zoneinfo.available_timezones())


def valid_time_zone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Asia/Seoul'")
    return name


class UserPublic(UserBase):
    id: uuid.UUID
    language: Language = "ko"
    profile_image_url: str | None = None
    created_at: datetime


class UserUpdate(SQLModel):
    """A PATCH body: only the fields sent change; `birth_year: null` clears the birth year."""

    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    birth_year: int | None = Field(default=None, ge=1900)
    language: Language | None = None
    speech_rate: float | None = Field(default=None, ge=0.5, le=2.0)
    time_zone: str | None = Field(default=None, max_length=64)

    @field_validator("display_name")
    @classmethod
    def _strip_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("display_name must not be blank")
        return value

    @field_validator("birth_year")
    @classmethod
    def _not_in_future(cls, value: int | None) -> int | None:
        if value is not None and value > datetime.now(UTC).year:
            raise ValueError("birth_year cannot be in the future")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else valid_time_zone(value)

    @model_validator(mode="after")
    def _no_null_for_required(self) -> UserUpdate:
        # Only birth_year may be cleared; sending null for the others is a client bug, not a reset.
        for name in ("display_name", "language", "speech_rate", "time_zone"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self
