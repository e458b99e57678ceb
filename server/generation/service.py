"""Starting a generation: the checks and the queued row shared by `POST /v1/generations` and the
companion's `make_picture` tool.

`start_generation` validates the request against the user's own memory and photo, applies the daily
quota (counted in the user's local day), writes the prompt, stores a `queued` Generation and hands
it to the worker. A refusal raises `GenerationRefused` (with the HTTP status it maps to and plain
words), or `QuotaExceeded` with when the quota resets; nothing is stored then.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.generation import GenerationError, prompts
from storage.models import Generation, Memory, Photo, User

if TYPE_CHECKING:
    from server.app import Services


class GenerationRefused(GenerationError):
    """A request we will not start; `status_code` is its HTTP answer (404, 422, 503)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class QuotaExceeded(GenerationRefused):
    """The user's daily count of this kind is used up until `resets_at`."""

    def __init__(self, message: str, *, limit: int, resets_at: datetime, retry_after_s: int) -> None:
        super().__init__(429, message)
        self.limit, self.resets_at, self.retry_after_s = limit, resets_at, retry_after_s


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    kind: str  # image | video
    memory_id: uuid.UUID | None = None
    photo_id: uuid.UUID | None = None
    prompt: str | None = None
    aspect_ratio: str | None = None


def user_zone(user: User) -> ZoneInfo:
    try:
        return ZoneInfo(user.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("Asia/Seoul")


async def check_quota(session: AsyncSession, user: User, kind: str, limit: int) -> None:
    """Raise QuotaExceeded when today's (the user's local day) count of this kind reached `limit`."""
    zone = user_zone(user)
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
        return
    retry_after = max(1, int((resets_at - now).total_seconds()))
    noun = "pictures" if kind == "image" else "videos"
    raise QuotaExceeded(
        f"You have made {limit} {noun} today, the daily limit. More can be made from "
        f"{resets_at:%H:%M} ({zone.key}), in about {retry_after // 3600} h {retry_after % 3600 // 60} min.",
        limit=limit,
        resets_at=resets_at,
        retry_after_s=retry_after,
    )


async def start_generation(
    session: AsyncSession, services: Services, user: User, request: GenerationRequest
) -> Generation:
    """Check, store and submit one generation; return the queued row. Raises GenerationRefused."""
    settings = services.settings
    worker = services.generation
    if not settings.replicate_api_token or worker is None:
        raise GenerationRefused(
            503,
            "Pictures and videos are not set up on this server (SILVERTALK_REPLICATE_API_TOKEN is missing)",
        )
    try:
        aspect_ratio = prompts.check_aspect_ratio(request.kind, request.aspect_ratio)
    except prompts.InvalidInput as e:
        raise GenerationRefused(422, str(e)) from None
    memory: Memory | None = None
    if request.memory_id is not None:
        memory = await session.get(Memory, request.memory_id)
        if memory is None or memory.user_id != user.id:
            raise GenerationRefused(404, "Memory not found")
    photo: Photo | None = None
    if request.kind == "image":
        if request.photo_id is not None:
            raise GenerationRefused(
                422, "photo_id is only used for videos; a picture starts from a memory or a prompt"
            )
        if memory is None and not (request.prompt and request.prompt.strip()):
            raise GenerationRefused(422, "a picture needs a memory_id or a prompt")
    else:
        if request.photo_id is None:
            raise GenerationRefused(422, "a video starts from one of your photos: photo_id is required")
        photo = await session.get(Photo, request.photo_id)
        if photo is None or photo.user_id != user.id:
            raise GenerationRefused(404, "Photo not found")
        if not settings.public_base_url:
            raise GenerationRefused(
                503, "Videos need SILVERTALK_PUBLIC_BASE_URL, so Replicate can fetch the starting photo"
            )
    limit = (
        settings.generation_images_per_day if request.kind == "image" else settings.generation_videos_per_day
    )
    await check_quota(session, user, request.kind, limit)
    prompt = (request.prompt or "").strip()
    if not prompt and memory is not None:
        prompt = prompts.compose_prompt(
            title=memory.title,
            body=memory.body,
            happened_on=memory.happened_on,
            place=memory.place,
            video=request.kind == "video",
        )
    elif not prompt:
        prompt = prompts.compose_prompt(title="this photograph, gently coming to life", video=True)
    gen = Generation(
        user_id=user.id,
        kind=request.kind,
        memory_id=memory.id if memory else None,
        photo_id=photo.id if photo else None,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
    )
    session.add(gen)
    await session.commit()
    await worker.send_start(gen.id)
    return gen
