"""Home screen API: everything the app's first screen shows, in one request."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from fastapi import APIRouter
from sqlmodel import col

from server.calendar import occurrences_between
from server.deps import CurrentUser, SessionDep
from server.photostore import to_public as photo_to_public
from server.photostore import user_zone
from server.recurrence import local_day
from server.routers.conversations import latest_summarised
from server.routers.memories import memories_public
from server.schemas.home import HomePublic
from server.schemas.users import UserPublic
from storage.models import Memory, Photo

router = APIRouter(prefix="/v1", tags=["home"])

LATEST_MEMORIES = 5
RECENT_PHOTOS = 8
# A day holds far fewer events than this; it only bounds a pathological rule.
DAY_OCCURRENCES = 100


@router.get("/home", response_model=HomePublic)
async def home(user: CurrentUser, session: SessionDep) -> HomePublic:
    """Today's and tomorrow's events in the user's time zone, latest memories and photos, last call."""
    zone = user_zone(user.time_zone)
    today = datetime.now(zone).date()
    today_start, today_end = local_day(today, zone)
    tomorrow_start, tomorrow_end = local_day(today + timedelta(days=1), zone)
    today_items, _ = await occurrences_between(session, user, today_start, today_end, DAY_OCCURRENCES)
    tomorrow_items, _ = await occurrences_between(
        session, user, tomorrow_start, tomorrow_end, DAY_OCCURRENCES
    )
    memories = (
        await session.execute(
            sa.select(Memory)
            .where(col(Memory.user_id) == user.id)
            .order_by(col(Memory.created_at).desc(), col(Memory.id).desc())
            .limit(LATEST_MEMORIES)
        )
    ).scalars()
    photos = (
        await session.execute(
            sa.select(Photo)
            .where(col(Photo.user_id) == user.id)
            .order_by(col(Photo.created_at).desc(), col(Photo.id).desc())
            .limit(RECENT_PHOTOS)
        )
    ).scalars()
    return HomePublic(
        user=UserPublic.model_validate(user),
        today=today_items,
        tomorrow=tomorrow_items,
        memories=await memories_public(session, user.id, list(memories)),
        photos=[photo_to_public(p) for p in photos],
        last_conversation=await latest_summarised(session, user.id),
    )
