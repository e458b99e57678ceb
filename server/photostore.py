"""Storing photos: validate and process the bytes, write the three files, insert the row.

Shared by the upload endpoint and the generation feature (which saves generated images here too).
Media keys are ours, never a client's: `photos/<id>/original.<ext>`, `photos/<id>/medium.jpg`,
`photos/<id>/thumb.jpg`. A refusal stores nothing; a failure half-way removes what was written.
"""

from __future__ import annotations

import logging
import uuid
import zoneinfo
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from server import ServerError, allocator, cpu, images
from server.schemas.photos import PhotoPublic, PhotoUrls
from storage.models import Photo, User

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("silvertalk.photos")

SIZES = ("original", "medium", "thumb")
CAPTION_MAX = 2000


class ImageRejected(ServerError):
    """An upload refused with `status_code` (413 too big, 415 wrong format, 400 corrupt)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def media_key(photo_id: uuid.UUID, size: str, content_type: str = "image/jpeg") -> str:
    """The storage key of one of a photo's files (`size` is original, medium or thumb)."""
    if size == "original":
        return f"photos/{photo_id.hex}/original.{images.EXTENSIONS.get(content_type, 'bin')}"
    if size in ("medium", "thumb"):
        return f"photos/{photo_id.hex}/{size}.jpg"
    raise ValueError(f"unknown photo size {size!r}")


def photo_keys(photo: Photo) -> dict[str, str]:
    return {size: media_key(photo.id, size, photo.content_type) for size in SIZES}


def content_type_of(photo: Photo, size: str) -> str:
    return photo.content_type if size == "original" else "image/jpeg"


def user_zone(name: str | None) -> tzinfo:
    """The user's time zone, or Asia/Seoul when unset or unknown."""
    try:
        return zoneinfo.ZoneInfo(name or "Asia/Seoul")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("Asia/Seoul")


def _process(data: bytes, max_pixels: int, max_decode_bytes: int, zone: tzinfo) -> images.ProcessedImage:
    """`images.process` in a worker thread, then the decode's memory handed back to the OS."""
    try:
        return images.process(data, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes, default_tz=zone)
    finally:
        allocator.release_memory()


async def save_photo(
    services: Services,
    session: AsyncSession,
    user_id: uuid.UUID,
    data: bytes,
    *,
    caption: str | None = None,
    source: str = "upload",
    commit: bool = True,
) -> Photo:
    """Process `data` and store it as a new photo of `user_id`; commit and return the row.

    With `commit=False` the row is only flushed: the caller finishes the transaction, so the photo
    appears together with whatever else it writes, and on a rollback deletes the files
    (`delete_photo_files`).

    Raises ImageRejected (nothing stored) for bodies over `max_upload_bytes` (413), images over
    `max_image_pixels` or `max_image_decode_bytes` decoded (413), formats other than
    JPEG/PNG/WebP/HEIC (415) and undecodable bytes (400). Captions longer than 2000 characters
    are cut (generation prompts can be longer).
    """
    settings = services.settings
    if len(data) > settings.max_upload_bytes:
        raise ImageRejected(413, f"The file is larger than {settings.max_upload_bytes} bytes")
    user = await session.get(User, user_id)
    zone = user_zone(user.time_zone if user else None)
    try:
        # A few decodes at once per process: each may take up to twice max_image_decode_bytes.
        processed = await cpu.run(
            "image",
            settings.image_decode_slots,
            _process,
            data,
            settings.max_image_pixels,
            settings.max_image_decode_bytes,
            zone,
        )
    except images.UnsupportedFormat as e:
        raise ImageRejected(415, str(e)) from e
    except images.TooManyPixels as e:
        raise ImageRejected(413, str(e)) from e
    except images.ImageError as e:
        raise ImageRejected(400, str(e)) from e

    photo = Photo(
        user_id=user_id,
        caption=caption[:CAPTION_MAX] if caption else None,
        width=processed.width,
        height=processed.height,
        content_type=processed.content_type,
        size_bytes=len(processed.original),
        # UTC, as the database gives it back: the same answer now and on every later read.
        taken_at=processed.taken_at.astimezone(UTC) if processed.taken_at else None,
        source=source,
    )
    keys = photo_keys(photo)
    blobs = {"original": processed.original, "medium": processed.medium, "thumb": processed.thumb}
    written: list[str] = []
    try:
        for size in SIZES:
            await services.media.put(keys[size], blobs[size])
            written.append(keys[size])
        session.add(photo)
        await (session.commit() if commit else session.flush())
    except BaseException:
        # No row without files and no files without a row.
        await session.rollback()
        for key in written:
            await services.media.delete(key)
        raise
    return photo


async def delete_photo_files(services: Services, photo: Photo) -> None:
    """Remove a photo's three files (missing ones are fine). Call after its row is deleted."""
    for key in photo_keys(photo).values():
        try:
            await services.media.delete(key)
        except OSError:
            # The row is already gone; an orphan file is harmless, a 500 would mislead the client.
            log.warning("could not delete media %s", key, exc_info=True)


def to_public(photo: Photo, base_url_path: str = "/v1") -> PhotoPublic:
    """The photo as the API shows it, with URLs of its three files."""
    base = f"{base_url_path}/photos/{photo.id}/file"
    urls = PhotoUrls(**{size: f"{base}?size={size}" for size in SIZES})
    return PhotoPublic.model_validate(photo, update={"urls": urls})


def photo_public(photo: Photo, base_url_path: str = "/v1") -> dict[str, Any]:
    """`to_public` as a JSON-ready dict (for callers that build their own responses)."""
    return to_public(photo, base_url_path).model_dump(mode="json")
