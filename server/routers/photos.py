"""Photos API: upload, list, show, serve the files, caption, delete. Scoped to the logged-in user."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Form, HTTPException, Query, Response, UploadFile
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server import photostore
from server.deps import CurrentUser, ServicesDep, SessionDep, parse_uuid
from server.photostore import ImageRejected, to_public
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from server.schemas.photos import PhotoPublic, PhotoUpdate
from storage.models import Photo

router = APIRouter(prefix="/v1", tags=["photos"])

NOT_FOUND = HTTPException(404, "Photo not found")


async def get_own_photo(session: AsyncSession, user_id: uuid.UUID, photo_id: str) -> Photo:
    """The user's photo by its id; 404 for a missing one, another user's, or a non-UUID id."""
    photo = await session.get(Photo, parse_uuid(photo_id))
    if photo is None or photo.user_id != user_id:
        raise NOT_FOUND
    return photo


@router.post("/photos", status_code=201, response_model=PhotoPublic)
async def upload_photo(
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    file: UploadFile,
    caption: Annotated[str | None, Form(max_length=photostore.CAPTION_MAX)] = None,
) -> PhotoPublic:
    """Store a JPEG, PNG, WebP or HEIC photo (multipart field `file`)."""
    limit = services.settings.max_upload_bytes
    # Read one byte past the limit: enough to know it is too big without reading it all.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"The file is larger than {limit} bytes")
    try:
        photo = await photostore.save_photo(services, session, user.id, data, caption=caption or None)
    except ImageRejected as e:
        raise HTTPException(e.status_code, e.message) from None
    return to_public(photo)


@router.get("/photos", response_model=Page[PhotoPublic])
async def list_photos(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[PhotoPublic]:
    """The user's photos, newest first."""
    rows, next_cursor = await fetch_page(
        session,
        sa.select(Photo).where(col(Photo.user_id) == user.id),
        key=col(Photo.created_at),
        id_col=col(Photo.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].created_at, row[0].id),
    )
    return Page(items=[to_public(row[0]) for row in rows], next_cursor=next_cursor)


@router.get("/photos/{photo_id}", response_model=PhotoPublic)
async def get_photo(photo_id: str, user: CurrentUser, session: SessionDep) -> PhotoPublic:
    return to_public(await get_own_photo(session, user.id, photo_id))


@router.get("/photos/{photo_id}/file", response_class=StreamingResponse)
async def get_photo_file(
    photo_id: str,
    user: CurrentUser,
    session: SessionDep,
    services: ServicesDep,
    size: Literal["original", "medium", "thumb"] = "original",
) -> StreamingResponse:
    """The bytes of one of the photo's files; private to the user, so no shared caches."""
    photo = await get_own_photo(session, user.id, photo_id)
    key = photostore.media_key(photo.id, size, photo.content_type)
    if not await services.media.exists(key):
        raise HTTPException(404, "Photo file not found")
    return StreamingResponse(
        services.media.stream(key),
        media_type=photostore.content_type_of(photo, size),
        # Files never change under a URL (a new photo is a new id), so the browser may keep them.
        headers={"Cache-Control": "private, max-age=86400"},  # nosniff: SecurityHeadersMiddleware
    )


@router.patch("/photos/{photo_id}", response_model=PhotoPublic)
async def update_photo(
    photo_id: str, body: PhotoUpdate, user: CurrentUser, session: SessionDep
) -> PhotoPublic:
    """Change the caption (`null` or "" clears it)."""
    photo = await get_own_photo(session, user.id, photo_id)
    if "caption" in body.model_fields_set:
        photo.caption = body.caption or None
    session.add(photo)
    await session.commit()
    return to_public(photo)


@router.delete("/photos/{photo_id}", status_code=204)
async def delete_photo(
    photo_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> Response:
    """Delete the row (memories drop it by cascade), then its files."""
    photo = await get_own_photo(session, user.id, photo_id)
    await session.delete(photo)
    await session.commit()
    await photostore.delete_photo_files(services, photo)
    return Response(status_code=204)
