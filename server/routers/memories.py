"""Memories API: the user's remembered stories, each with its own photos in order.

`photo_ids` may name only the user's own photos: an unknown id, or another user's, answers 422
(the body is wrong, the memory is not missing) naming only the ids the client itself sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.deps import CurrentUser, SessionDep, parse_uuid
from server.photostore import to_public as photo_to_public
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from server.schemas.memories import MemoryCreate, MemoryPublic, MemoryUpdate
from server.schemas.photos import PhotoPublic
from storage.models import Memory, MemoryPhoto, Photo, utcnow

router = APIRouter(prefix="/v1", tags=["memories"])

NOT_FOUND = HTTPException(404, "Memory not found")


async def get_own_memory(session: AsyncSession, user_id: uuid.UUID, memory_id: str) -> Memory:
    memory = await session.get(Memory, parse_uuid(memory_id))
    if memory is None or memory.user_id != user_id:
        raise NOT_FOUND
    return memory


async def _own_photo_ids(session: AsyncSession, user_id: uuid.UUID, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """`ids` without repeats, in order, after checking each is the user's photo (422 otherwise)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    found = set(
        (
            await session.execute(
                sa.select(col(Photo.id)).where(col(Photo.user_id) == user_id, col(Photo.id).in_(wanted))
            )
        ).scalars()
    )
    unknown = [str(i) for i in wanted if i not in found]
    if unknown:
        raise HTTPException(422, f"Unknown photo ids: {', '.join(unknown)}")
    return wanted


async def _set_photos(session: AsyncSession, memory_id: uuid.UUID, photo_ids: list[uuid.UUID]) -> None:
    await session.execute(sa.delete(MemoryPhoto).where(col(MemoryPhoto.memory_id) == memory_id))
    session.add_all(
        MemoryPhoto(memory_id=memory_id, photo_id=pid, position=i) for i, pid in enumerate(photo_ids)
    )


async def memories_public(
    session: AsyncSession, user_id: uuid.UUID, memories: Sequence[Memory]
) -> list[MemoryPublic]:
    """The memories as the API shows them, their photos loaded in one query."""
    photos: dict[uuid.UUID, list[PhotoPublic]] = {m.id: [] for m in memories}
    if memories:
        rows = await session.execute(
            sa.select(col(MemoryPhoto.memory_id), Photo)
            .join(Photo, col(Photo.id) == col(MemoryPhoto.photo_id))
            .where(col(MemoryPhoto.memory_id).in_(list(photos)), col(Photo.user_id) == user_id)
            .order_by(col(MemoryPhoto.memory_id), col(MemoryPhoto.position))
        )
        for memory_id, photo in rows.all():
            photos[memory_id].append(photo_to_public(photo))
    return [MemoryPublic.model_validate(m, update={"photos": photos[m.id]}) for m in memories]


@router.post("/memories", status_code=201, response_model=MemoryPublic)
async def create_memory(body: MemoryCreate, user: CurrentUser, session: SessionDep) -> MemoryPublic:
    photo_ids = await _own_photo_ids(session, user.id, body.photo_ids)
    memory = Memory(**body.model_dump(exclude={"photo_ids"}), user_id=user.id)
    session.add(memory)
    await session.flush()  # the row must exist before the link rows point at it
    await _set_photos(session, memory.id, photo_ids)
    await session.commit()
    return (await memories_public(session, user.id, [memory]))[0]


@router.get("/memories", response_model=Page[MemoryPublic])
async def list_memories(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[MemoryPublic]:
    """The user's memories, newest first."""
    rows, next_cursor = await fetch_page(
        session,
        sa.select(Memory).where(col(Memory.user_id) == user.id),
        key=col(Memory.created_at),
        id_col=col(Memory.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].created_at, row[0].id),
    )
    items = await memories_public(session, user.id, [row[0] for row in rows])
    return Page(items=items, next_cursor=next_cursor)


@router.get("/memories/{memory_id}", response_model=MemoryPublic)
async def get_memory(memory_id: str, user: CurrentUser, session: SessionDep) -> MemoryPublic:
    memory = await get_own_memory(session, user.id, memory_id)
    return (await memories_public(session, user.id, [memory]))[0]


@router.patch("/memories/{memory_id}", response_model=MemoryPublic)
async def update_memory(
    memory_id: str, body: MemoryUpdate, user: CurrentUser, session: SessionDep
) -> MemoryPublic:
    memory = await get_own_memory(session, user.id, memory_id)
    changes = body.model_dump(exclude_unset=True, exclude={"photo_ids"})
    if body.photo_ids is not None:
        await _set_photos(session, memory.id, await _own_photo_ids(session, user.id, body.photo_ids))
    for name, value in changes.items():
        setattr(memory, name, value)
    memory.updated_at = utcnow()
    session.add(memory)
    await session.commit()
    return (await memories_public(session, user.id, [memory]))[0]


@router.delete("/memories/{memory_id}", status_code=204)
async def delete_memory(memory_id: str, user: CurrentUser, session: SessionDep) -> Response:
    """Delete the memory; its photos stay in the gallery."""
    memory = await get_own_memory(session, user.id, memory_id)
    await session.delete(memory)
    await session.commit()
    return Response(status_code=204)
