"""The home screen in one response: who, today and tomorrow, recent memories and photos, last call."""

from __future__ import annotations

from sqlmodel import SQLModel

from server.schemas.conversations import ConversationPublic
from server.schemas.events import OccurrencePublic
from server.schemas.memories import MemoryPublic
from server.schemas.photos import PhotoPublic
from server.schemas.users import UserPublic


class HomePublic(SQLModel):
    user: UserPublic
    today: list[OccurrencePublic]  # in the user's time zone, recurring events expanded
    tomorrow: list[OccurrencePublic]
    memories: list[MemoryPublic]  # the latest few, newest first
    photos: list[PhotoPublic]  # the most recent, newest first
    last_conversation: ConversationPublic | None  # the latest one with a summary
