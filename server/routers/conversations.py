"""Conversation history API (read-only): the user's calls, newest first, and one call's turns."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from server.deps import CurrentUser, SessionDep, parse_uuid
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from server.schemas.conversations import ConversationDetail, ConversationPublic, TurnPublic
from storage.models import Conversation, Turn

router = APIRouter(prefix="/v1", tags=["conversations"])

NOT_FOUND = HTTPException(404, "Conversation not found")


def conversations_query(user_id: uuid.UUID) -> sa.Select[Any]:
    """The user's conversations with their turn counts (one correlated count, no N+1)."""
    turn_count = (
        sa.select(sa.func.count())
        .select_from(Turn)
        .where(col(Turn.conversation_id) == col(Conversation.id))
        .scalar_subquery()
    )
    return sa.select(Conversation, turn_count).where(col(Conversation.user_id) == user_id)


def to_public(conversation: Conversation, turn_count: int) -> ConversationPublic:
    return ConversationPublic.model_validate(conversation, update={"turn_count": turn_count})


async def latest_summarised(session: AsyncSession, user_id: uuid.UUID) -> ConversationPublic | None:
    """The most recent conversation that has a summary, for the home screen."""
    stmt = (
        conversations_query(user_id)
        .where(col(Conversation.summary).is_not(None), col(Conversation.summary) != "")
        .order_by(col(Conversation.started_at).desc(), col(Conversation.id).desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).first()
    return to_public(row[0], row[1]) if row else None


@router.get("/conversations", response_model=Page[ConversationPublic])
async def list_conversations(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ConversationPublic]:
    rows, next_cursor = await fetch_page(
        session,
        conversations_query(user.id),
        key=col(Conversation.started_at),
        id_col=col(Conversation.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].started_at, row[0].id),
    )
    return Page(items=[to_public(row[0], row[1]) for row in rows], next_cursor=next_cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(
    conversation_id: str, user: CurrentUser, session: SessionDep
) -> ConversationDetail:
    """One conversation with its turns in the order they were spoken."""
    conversation = await session.get(Conversation, parse_uuid(conversation_id))
    if conversation is None or conversation.user_id != user.id:
        raise NOT_FOUND
    turns = (
        await session.execute(
            sa.select(Turn)
            .where(col(Turn.conversation_id) == conversation.id)
            .order_by(col(Turn.started_at), col(Turn.id))
        )
    ).scalars()
    public_turns = [TurnPublic.model_validate(t) for t in turns]
    return ConversationDetail.model_validate(
        conversation, update={"turn_count": len(public_turns), "turns": public_turns}
    )
