"""Keeping a finished prediction's output: a picture becomes a gallery photo, a video an MP4 and poster.

Each store ends with a conditional UPDATE (`WHERE status = 'running'`): a generation cancelled
meanwhile, or already finished by another check, keeps nothing from this one.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col

from server.generation import OutputRefused
from storage.models import Generation, Memory, MemoryPhoto, utcnow

if TYPE_CHECKING:
    from server.app import Services


async def store_image(services: Services, gen: Generation, data: bytes) -> bool:
    """A new gallery photo (linked to the memory) and the row succeeded; False if it was cancelled.

    The photo, its memory link and the status change are one transaction: a second check finishing
    the same generation at once waits on the row's lock, finds it succeeded, and rolls its own photo
    back, so nobody ever sees two pictures for one generation, not even for a moment.
    """
    from server.photostore import ImageRejected, delete_photo_files, save_photo

    async with services.sessions() as session:
        memory = await session.get(Memory, gen.memory_id) if gen.memory_id else None
        caption = memory.title if memory is not None else gen.prompt[:200]
        try:
            photo = await save_photo(
                services, session, gen.user_id, data, caption=caption, source="generated", commit=False
            )
        except ImageRejected as e:
            raise OutputRefused(f"the picture was not accepted ({e})") from e
        kept = False
        try:
            done = await session.execute(
                sa.update(Generation)
                .where(col(Generation.id) == gen.id, col(Generation.status) == "running")
                .values(
                    status="succeeded",
                    result_photo_id=photo.id,
                    progress=1.0,
                    error=None,
                    completed_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                if memory is not None:
                    last = await session.scalar(
                        sa.select(sa.func.max(col(MemoryPhoto.position))).where(
                            col(MemoryPhoto.memory_id) == memory.id
                        )
                    )
                    session.add(MemoryPhoto(memory_id=memory.id, photo_id=photo.id, position=(last or 0) + 1))
                await session.commit()
                kept = True
        finally:
            if not kept:  # cancelled or finished by another check meanwhile, or an error: keep nothing
                await session.rollback()
                await delete_photo_files(services, photo)
    return kept


async def store_video(services: Services, gen: Generation, data: bytes, poster: bytes) -> bool:
    """The MP4 and its poster in media, and the row succeeded; False (nothing kept) if cancelled."""
    # Keys of this run's own: a second check finishing the same generation at once (a webhook and
    # a sweep) must not delete the files the first one stored.
    run = uuid.uuid4().hex[:8]
    video_key = f"generations/{gen.id}/video-{run}.mp4"
    poster_key = f"generations/{gen.id}/poster-{run}.jpg"
    await services.media.put(video_key, data)
    await services.media.put(poster_key, poster)
    async with services.sessions() as session:
        done = await session.execute(
            sa.update(Generation)
            .where(col(Generation.id) == gen.id, col(Generation.status) == "running")
            .values(
                status="succeeded",
                result_media_key=video_key,
                poster_media_key=poster_key,
                progress=1.0,
                error=None,
                completed_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        await session.commit()
    if done.rowcount == 1:  # type: ignore[attr-defined]
        return True
    await services.media.delete(video_key)
    await services.media.delete(poster_key)
    return False


def first_url(output: Any) -> str | None:
    """The output file's URL: a string, or the first of a list (flux-schnell answers a list)."""
    if isinstance(output, str) and output:
        return output
    if isinstance(output, list):
        for item in output:
            if isinstance(item, str) and item:
                return item
    return None
