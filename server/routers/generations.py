"""generations API: ask for a picture or a short video from a memory, follow it, fetch it, cancel it."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlmodel import col

from server.deps import CurrentUser, ServicesDep, SessionDep, parse_uuid
from server.generation import prompts
from server.generation.public import GenerationPublic, generation_public
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from storage import MediaNotFound
from storage.media import LocalMediaStore
from storage.models import Generation, Memory, Photo, User

router = APIRouter(prefix="/v1/generations", tags=["generations"])


class GenerationCreate(BaseModel):
    kind: Literal["image", "video"]
    memory_id: str | None = None
    photo_id: str | None = None
    prompt: str | None = Field(default=None, max_length=prompts.MAX_PROMPT_CHARS)
    aspect_ratio: str | None = Field(default=None, max_length=8)


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def _zone(user: User) -> ZoneInfo:
    try:
        return ZoneInfo(user.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Seoul")


async def _quota_exceeded(session: SessionDep, user: User, kind: str, limit: int) -> JSONResponse | None:
    """A 429 when today's (the user's local day) count of this kind reached the limit, else None."""
    zone = _zone(user)
    now = datetime.now(zone)
    day_start = datetime.combine(now.date(), time.min, tzinfo=zone)
    resets_at = datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=zone)
    # Requests that never reached Replicate (failed or cancelled before a prediction) cost nothing.
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Generation)
        .where(
            col(Generation.user_id) == user.id,
            col(Generation.kind) == kind,
            col(Generation.created_at) >= day_start.astimezone(UTC),
            sa.or_(
                col(Generation.prediction_id).is_not(None), col(Generation.status).in_(("queued", "running"))
            ),
        )
    )
    if (count or 0) < limit:
        return None
    retry_after = max(1, int((resets_at - now).total_seconds()))
    noun = "pictures" if kind == "image" else "videos"
    return JSONResponse(
        {
            "detail": f"You have made {limit} {noun} today, the daily limit. More can be made from "
            f"{resets_at:%H:%M} ({zone.key}), in about {retry_after // 3600} h "
            f"{retry_after % 3600 // 60} min.",
            "limit": limit,
            "resets_at": resets_at.isoformat(),
            "retry_after_s": retry_after,
        },
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(retry_after)},
    )


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
    settings = services.settings
    worker = services.generation
    if not settings.replicate_api_token or worker is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Pictures and videos are not set up on this server (SILVERTALK_REPLICATE_API_TOKEN is missing)",
        )
    try:
        aspect_ratio = prompts.check_aspect_ratio(body.kind, body.aspect_ratio)
    except prompts.InvalidInput as e:
        raise _unprocessable(str(e)) from None
    memory: Memory | None = None
    if body.memory_id is not None:
        memory = await session.get(Memory, parse_uuid(body.memory_id))
        if memory is None or memory.user_id != user.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Memory not found")
    photo: Photo | None = None
    if body.kind == "image":
        if body.photo_id is not None:
            raise _unprocessable(
                "photo_id is only used for videos; a picture starts from a memory or a prompt"
            )
        if memory is None and not (body.prompt and body.prompt.strip()):
            raise _unprocessable("a picture needs a memory_id or a prompt")
    else:
        if body.photo_id is None:
            raise _unprocessable("a video starts from one of your photos: photo_id is required")
        photo = await session.get(Photo, parse_uuid(body.photo_id))
        if photo is None or photo.user_id != user.id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Photo not found")
        if not settings.public_base_url:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "Videos need SILVERTALK_PUBLIC_BASE_URL, so Replicate can fetch the starting photo",
            )
    limit = settings.generation_images_per_day if body.kind == "image" else settings.generation_videos_per_day
    over = await _quota_exceeded(session, user, body.kind, limit)
    if over is not None:
        return over
    prompt = (body.prompt or "").strip()
    if not prompt and memory is not None:
        prompt = prompts.compose_prompt(
            title=memory.title,
            body=memory.body,
            happened_on=memory.happened_on,
            place=memory.place,
            video=body.kind == "video",
        )
    elif not prompt:
        prompt = prompts.compose_prompt(title="this photograph, gently coming to life", video=True)
    gen = Generation(
        user_id=user.id,
        kind=body.kind,
        memory_id=memory.id if memory else None,
        photo_id=photo.id if photo else None,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
    )
    session.add(gen)
    await session.commit()
    await worker.send_start(gen.id)
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
