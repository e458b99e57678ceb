"""generations API: ask for a picture or a short video from a memory, follow it, fetch it, cancel it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import col

from server.deps import CurrentUser, ServicesDep, SessionDep, parse_uuid
from server.generation import prompts
from server.generation.public import GenerationPublic, generation_public
from server.generation.service import GenerationRefused, GenerationRequest, QuotaExceeded, start_generation
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from storage import MediaNotFound
from storage.media import LocalMediaStore
from storage.models import Generation, User

router = APIRouter(prefix="/v1/generations", tags=["generations"])


class GenerationCreate(BaseModel):
    kind: Literal["image", "video"]
    memory_id: str | None = None
    photo_id: str | None = None
    prompt: str | None = Field(default=None, max_length=prompts.MAX_PROMPT_CHARS)
    aspect_ratio: str | None = Field(default=None, max_length=8)


async def _own(session: SessionDep, user: User, generation_id: str) -> Generation:
    gen = await session.get(Generation, parse_uuid(generation_id))
    if gen is None or gen.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Generation not found")
    return gen


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=GenerationPublic)
async def create_generation(
    body: GenerationCreate, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> Any:
    """Queue a picture (from a memory or a prompt) or a video (from one of the user's photos)."""
    request = GenerationRequest(
        kind=body.kind,
        memory_id=parse_uuid(body.memory_id) if body.memory_id is not None else None,
        photo_id=parse_uuid(body.photo_id) if body.photo_id is not None else None,
        prompt=body.prompt,
        aspect_ratio=body.aspect_ratio,
    )
    try:
        gen = await start_generation(session, services, user, request)
    except QuotaExceeded as e:
        return JSONResponse(
            {
                "detail": str(e),
                "limit": e.limit,
                "resets_at": e.resets_at.isoformat(),
                "retry_after_s": e.retry_after_s,
            },
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(e.retry_after_s)},
        )
    except GenerationRefused as e:
        raise HTTPException(e.status_code, str(e)) from None
    return await generation_public(session, gen)


@router.get("", response_model=Page[GenerationPublic])
async def list_generations(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[GenerationPublic]:
    """The user's generations, newest first; pass `next_cursor` back as `cursor` for more."""
    rows, next_cursor = await fetch_page(
        session,
        sa.select(Generation).where(col(Generation.user_id) == user.id),
        key=col(Generation.created_at),
        id_col=col(Generation.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].created_at, row[0].id),
    )
    return Page(items=[await generation_public(session, row[0]) for row in rows], next_cursor=next_cursor)


@router.get("/{generation_id}", response_model=GenerationPublic)
async def get_generation(generation_id: str, user: CurrentUser, session: SessionDep) -> GenerationPublic:
    """One generation: status, progress, plain-words error, and the stored result when done."""
    return await generation_public(session, await _own(session, user, generation_id))


@router.get("/{generation_id}/file")
async def generation_file(
    generation_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep, poster: bool = False
) -> Response:
    """A finished video's MP4 (with Range support), or its poster JPEG with `?poster=1`."""
    gen = await _own(session, user, generation_id)
    key = gen.poster_media_key if poster else gen.result_media_key
    if gen.kind != "video" or gen.status != "succeeded" or not key:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This generation has no video file")
    media_type = "image/jpeg" if poster else "video/mp4"
    headers = {"Cache-Control": "private, max-age=3600"}
    media = services.media
    if isinstance(media, LocalMediaStore):
        path = media.path(key)
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "This generation has no video file")
        return FileResponse(path, media_type=media_type, headers=headers)
    if not await media.exists(key):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This generation has no video file")
    try:
        return StreamingResponse(media.stream(key), media_type=media_type, headers=headers)
    except MediaNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "This generation has no video file") from None


@router.post("/{generation_id}/cancel", response_model=GenerationPublic)
async def cancel_generation(
    generation_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> GenerationPublic:
    """Stop a queued or running generation (409 once it has finished)."""
    gen = await _own(session, user, generation_id)
    worker = services.generation
    if gen.status not in ("queued", "running") or worker is None or not await worker.cancel(gen.id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"This generation has already {gen.status}")
    await session.refresh(gen)
    return await generation_public(session, gen)
