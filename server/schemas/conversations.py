"""Conversation history schemas (read-only here; the realtime gateway writes the rows)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel


class ConversationBase(SQLModel):
    language: str
    started_at: datetime
    ended_at: datetime | None = None  # None while the call is still going
    summary: str | None = None


class ConversationPublic(ConversationBase):
    id: uuid.UUID
    turn_count: int = 0


class TurnPublic(SQLModel):
    id: uuid.UUID
    item_id: str  # the realtime protocol's conversation item id
    role: str  # user | assistant
    text: str
    status: str  # completed | cancelled | failed
    started_at: datetime
    ended_at: datetime | None
    #: Stage latencies in ms; `end_*`: how the end of the turn was decided (pipeline.turn_end).
    timings: dict[str, float | str] = Field(default_factory=dict)


class ConversationDetail(ConversationPublic):
    turns: list[TurnPublic]
