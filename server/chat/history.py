"""One conversation history per user, whether they called or sent voice messages.

Calls store their turns in a `call` Conversation each; voice messages store theirs in the user's
one `messages` Conversation. The companion answering a message is given the user's most recent
turns across all of them, oldest first, so it remembers what was said on yesterday's call.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from pipeline.engines.base import Message
from storage.models import Conversation, Turn


async def load_history(
    sessions: async_sessionmaker[AsyncSession], user_id: uuid.UUID, limit: int
) -> list[Message]:
    """The user's last `limit` turns (calls and messages), oldest first, as LLM history."""
    if limit <= 0:
        return []
    async with sessions() as s:
        rows = (
            await s.execute(
                select(Turn.role, Turn.text)
                .join(Conversation, col(Conversation.id) == col(Turn.conversation_id))
                .where(
                    col(Conversation.user_id) == user_id,
                    col(Turn.role).in_(("user", "assistant")),
                    col(Turn.status).in_(("completed", "cancelled")),
                    col(Turn.text) != "",
                )
                .order_by(col(Turn.started_at).desc())
                .limit(limit)
            )
        ).all()
    return [
        Message(role="user" if role == "user" else "assistant", text=text) for role, text in reversed(rows)
    ]


async def messages_conversation(s: AsyncSession, user_id: uuid.UUID, language: str) -> uuid.UUID:
    """The user's voice-message conversation, created with their first message."""
    found = await s.scalar(
        select(Conversation.id)
        .where(col(Conversation.user_id) == user_id, col(Conversation.kind) == "messages")
        .order_by(col(Conversation.started_at))
        .limit(1)
    )
    if found is not None:
        return found
    row = Conversation(user_id=user_id, language=language, kind="messages")
    s.add(row)
    await s.flush()
    return row.id


def add_turns(
    s: AsyncSession,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    user_text: str,
    reply_text: str,
    *,
    asked_at: datetime,
    answered_at: datetime,
    timings: dict[str, float],
) -> None:
    """A message and its answer as two turns (item ids derived from the message id)."""
    s.add(
        Turn(
            conversation_id=conversation_id,
            item_id=f"msg_{message_id.hex[:24]}",
            role="user",
            text=user_text[:20000],
            started_at=asked_at,
            ended_at=asked_at,
        )
    )
    s.add(
        Turn(
            conversation_id=conversation_id,
            item_id=f"msg_{message_id.hex[:24]}_reply",
            role="assistant",
            text=reply_text[:20000],
            started_at=answered_at,
            ended_at=answered_at,
            timings=dict(timings),
        )
    )
