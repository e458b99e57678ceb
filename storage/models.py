"""SQLModel tables, following the ladder XBase -> XCreate / XUpdate -> X(table=True) -> XPublic.

Timestamps are stored as timezone-aware UTC. Every row that belongs to a user carries `user_id`,
and every query in the routers filters on it: another user's id is indistinguishable from a
missing one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware (SQLite drops the offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def ts_field(nullable: bool = False, index: bool = False, **kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index), **kw)


def created_field() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True))


# --- users -------------------------------------------------------------------------------------


class UserBase(SQLModel):
    display_name: str = Field(default="", max_length=100)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    language: str = Field(default="ko", max_length=8)
    speech_rate: float = Field(default=1.0, ge=0.5, le=2.0)
    time_zone: str = Field(default="Asia/Seoul", max_length=64)


class User(UserBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kakao_id: int | None = Field(default=None, sa_column=Column(sa.BigInteger, unique=True, index=True))
    dev_name: str | None = Field(default=None, max_length=100, unique=True, index=True)
    profile_image_url: str | None = None
    created_at: datetime = created_field()
    #: How they pause when they speak, learned in calls (`pipeline.turn_end.SpeakerHabits`).
    speaker_habits: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}")
    )


class RefreshToken(SQLModel, table=True):
    """One issued refresh token. Rotation marks it used; reuse of a used one revokes its family."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = created_field()
    expires_at: datetime = ts_field()
    used_at: datetime | None = ts_field(nullable=True, default=None)
    revoked_at: datetime | None = ts_field(nullable=True, default=None)


# --- photos ------------------------------------------------------------------------------------


class Photo(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    caption: str | None = Field(default=None, max_length=2000)
    width: int
    height: int
    content_type: str = Field(max_length=64)
    size_bytes: int
    taken_at: datetime | None = ts_field(nullable=True, default=None)
    source: str = Field(default="upload", max_length=32)
    created_at: datetime = created_field()


# --- calendar ----------------------------------------------------------------------------------


class Event(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=200)
    starts_at: datetime = ts_field(index=True)
    ends_at: datetime | None = ts_field(nullable=True, default=None)
    # The wall-clock offset the event was created with: recurrences expand in local time.
    tz_offset_minutes: int = 0
    all_day: bool = False
    rrule: str | None = Field(default=None, max_length=500)
    remind_minutes_before: int | None = None
    notes: str | None = Field(default=None, max_length=4000)
    created_at: datetime = created_field()


# --- memories ----------------------------------------------------------------------------------


class MemoryPhoto(SQLModel, table=True):
    memory_id: uuid.UUID = Field(foreign_key="memory.id", primary_key=True, ondelete="CASCADE")
    photo_id: uuid.UUID = Field(foreign_key="photo.id", primary_key=True, ondelete="CASCADE")
    position: int = 0


class Memory(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=200)
    body: str = Field(default="", max_length=20000)
    # "1968" or "1968-07-14": a year alone is a common answer from older people.
    happened_on: str | None = Field(default=None, max_length=10)
    place: str | None = Field(default=None, max_length=200)
    people: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="manual", max_length=16)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


# --- conversations -----------------------------------------------------------------------------


class Conversation(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    language: str = Field(default="ko", max_length=8)
    # "call" (a live call) or "messages" (the user's voice messages: one conversation per user).
    kind: str = Field(default="call", max_length=16, sa_column_kwargs={"server_default": "call"})
    started_at: datetime = created_field()
    ended_at: datetime | None = ts_field(nullable=True, default=None)
    summary: str | None = Field(default=None, max_length=4000)


class Turn(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conversation_id: uuid.UUID = Field(foreign_key="conversation.id", index=True, ondelete="CASCADE")
    item_id: str = Field(max_length=64)
    role: str = Field(max_length=16)  # user | assistant
    text: str = Field(default="", max_length=20000)
    status: str = Field(default="completed", max_length=16)  # completed | cancelled | failed
    started_at: datetime = created_field()
    ended_at: datetime | None = ts_field(nullable=True, default=None)
    timings: dict[str, float | str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# --- alerts ------------------------------------------------------------------------------------


class Alert(SQLModel, table=True):
    """Words of emergency heard in a call, and how telling the caregiver went."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    conversation_id: uuid.UUID | None = Field(
        default=None, foreign_key="conversation.id", ondelete="SET NULL"
    )
    kind: str = Field(max_length=32)  # pipeline.emergency.KINDS
    text: str = Field(max_length=2000)  # what the caller said
    language: str = Field(default="ko", max_length=8)
    # pending | delivered | failed (retries used up) | not_configured (no caregiver webhook)
    delivery: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = ts_field(nullable=True, default=None)
    created_at: datetime = created_field()


# --- generation --------------------------------------------------------------------------------


class Generation(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=8)  # image | video
    status: str = Field(default="queued", max_length=16, index=True)
    memory_id: uuid.UUID | None = Field(default=None, foreign_key="memory.id", ondelete="SET NULL")
    photo_id: uuid.UUID | None = Field(default=None, foreign_key="photo.id", ondelete="SET NULL")
    prompt: str = Field(max_length=4000)
    aspect_ratio: str | None = Field(default=None, max_length=8)
    prediction_id: str | None = Field(default=None, max_length=64, index=True)
    progress: float | None = None
    error: str | None = Field(default=None, max_length=2000)
    result_photo_id: uuid.UUID | None = Field(default=None, foreign_key="photo.id", ondelete="SET NULL")
    result_media_key: str | None = Field(default=None, max_length=200)
    poster_media_key: str | None = Field(default=None, max_length=200)
    attempts: int = 0
    # Set when a job claims a slot and is about to create the prediction: the exact input sent,
    # so a job run again after a crash finds the prediction already made instead of making another.
    started_at: datetime | None = ts_field(nullable=True, default=None)
    prediction_input: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # When the sweep next asks Replicate (a webhook that never came); `checks` drives the backoff.
    next_check_at: datetime | None = ts_field(nullable=True, default=None, index=True)
    checks: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    completed_at: datetime | None = ts_field(nullable=True, default=None)


class WebhookDelivery(SQLModel, table=True):
    """Seen webhook ids, so a repeated delivery is handled once."""

    webhook_id: str = Field(primary_key=True, max_length=128)
    received_at: datetime = created_field()


# --- voice messages ------------------------------------------------------------------------------


class ChatMessage(SQLModel, table=True):
    """One voice (or typed) message and the companion's spoken answer.

    status: queued -> transcribing -> thinking -> speaking -> done, or failed (with `error`).
    A job holds the message while `lease_until` is in the future; `attempts` numbers the holds, and
    only the current holder may write the result.
    """

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    conversation_id: uuid.UUID | None = Field(
        default=None, foreign_key="conversation.id", ondelete="SET NULL"
    )
    status: str = Field(default="queued", max_length=16, index=True)
    language: str = Field(default="ko", max_length=8)
    input_kind: str = Field(max_length=8)  # audio | text
    # The upload decoded to 16 kHz mono WAV (the original is not kept).
    input_media_key: str | None = Field(default=None, max_length=200)
    input_duration_s: float | None = None
    text: str | None = Field(default=None, max_length=20000)  # the typed text, or the transcript
    reply_text: str | None = Field(default=None, max_length=20000)
    reply_media_key: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, max_length=2000)
    timings: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    lease_until: datetime | None = ts_field(nullable=True, default=None)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()
    completed_at: datetime | None = ts_field(nullable=True, default=None)
