"""Alerts API: the emergencies heard in the user's own calls, and whether the caregiver was told."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlmodel import col

from server.deps import CurrentUser, SessionDep
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from storage.models import Alert

router = APIRouter(prefix="/v1", tags=["alerts"])


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID | None
    kind: str
    text: str
    language: str
    delivery: str  # pending | delivered | failed | not_configured
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@router.get("/alerts", response_model=Page[AlertPublic])
async def list_alerts(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[AlertPublic]:
    """The user's alerts, newest first."""
    rows, next_cursor = await fetch_page(
        session,
        sa.select(Alert).where(col(Alert.user_id) == user.id),
        key=col(Alert.created_at),
        id_col=col(Alert.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].created_at, row[0].id),
    )
    return Page(items=[AlertPublic.model_validate(row[0]) for row in rows], next_cursor=next_cursor)
