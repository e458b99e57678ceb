"""The public shape of a generation, shared by the REST API and the realtime push."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Generation, Photo

UPDATED_EVENT = "silvertalk.generation.updated"


class GenerationPublic(BaseModel):
    id: uuid.UUID
    kind: str
    status: str  # queued | running | succeeded | failed | canceled
    progress: float | None = None
    error: str | None = None
    prompt: str
    aspect_ratio: str | None = None
    memory_id: uuid.UUID | None = None
    photo_id: uuid.UUID | None = None
    # On success: {"photo": <photo>} for an image; {"url", "poster_url", "content_type"} for a video.
    result: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


def video_urls(generation_id: uuid.UUID) -> dict[str, Any]:
    base = f"/v1/generations/{generation_id}/file"
    return {"url": base, "poster_url": f"{base}?poster=1", "content_type": "video/mp4"}


async def generation_public(session: AsyncSession, gen: Generation) -> GenerationPublic:
    """The generation as clients see it, with the stored result when it succeeded."""
    from server.photostore import photo_public

    result: dict[str, Any] | None = None
    if gen.status == "succeeded":
        if gen.kind == "image" and gen.result_photo_id is not None:
            photo = await session.get(Photo, gen.result_photo_id)
            if photo is not None:
                result = {"photo": photo_public(photo)}
        elif gen.kind == "video" and gen.result_media_key:
            result = video_urls(gen.id)
    return GenerationPublic(
        id=gen.id,
        kind=gen.kind,
        status=gen.status,
        progress=gen.progress,
        error=gen.error,
        prompt=gen.prompt,
        aspect_ratio=gen.aspect_ratio,
        memory_id=gen.memory_id,
        photo_id=gen.photo_id,
        result=result,
        created_at=gen.created_at,
        updated_at=gen.updated_at,
        completed_at=gen.completed_at,
    )


def updated_event(public: GenerationPublic) -> dict[str, Any]:
    """The custom realtime server event for a status change."""
    return {"type": UPDATED_EVENT, "generation": public.model_dump(mode="json")}
