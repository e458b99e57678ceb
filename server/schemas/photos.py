"""Photo API schemas: the caption a client may change and the photo it sees, with file URLs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel


class PhotoBase(SQLModel):
    caption: str | None = Field(default=None, max_length=2000)


class PhotoUpdate(PhotoBase):
    """PATCH body: `caption: null` clears it."""


class PhotoUrls(SQLModel):
    original: str
    medium: str
    thumb: str


class PhotoPublic(PhotoBase):
    id: uuid.UUID
    width: int
    height: int
    content_type: str  # of the stored original
    size_bytes: int
    taken_at: datetime | None
    source: str  # upload | generated
    created_at: datetime
    urls: PhotoUrls
