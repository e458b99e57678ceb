"""What was said lately, for the next call or voice message: the companion remembers.

A call's instruction carries the summaries of the caller's last few calls (written after each
hang-up by `server.companion.summary`) and the last turns of their voice messages, each with its
day, so "how was the dentist?" can follow "I'm seeing the dentist tomorrow" across a hang-up, and
a call can pick up what a voice message said (and the other way round: voice messages read the
call summaries through the same facts). Old talk is left out: past `CALLS_WITHIN` or
`MESSAGES_WITHIN` it is stale, and the memories keep what lasts.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from storage.models import Conversation, Turn

#: Calls whose summaries are recalled, newest first, and how far back.
RECENT_CALLS = 3
CALLS_WITHIN = timedelta(days=30)
#: Voice-message turns recalled (the newest, in order), and how far back.
RECENT_MESSAGE_TURNS = 4
MESSAGES_WITHIN = timedelta(days=7)
#: A recalled text longer than this is cut (a summary is a few sentences; a message may ramble).
MAX_CHARS = 400


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1].rstrip() + "\u2026"


async def recent_calls(
    s: AsyncSession, user_id: uuid.UUID, zone: tzinfo, now: datetime
) -> list[dict[str, Any]]:
    """The summaries of the caller's last calls that ended, newest first: [{"date", "summary"}]."""
    rows = (
        await s.execute(
            select(Conversation.ended_at, Conversation.summary)
            .where(
                col(Conversation.user_id) == user_id,
                col(Conversation.kind) == "call",
                col(Conversation.ended_at).is_not(None),
                col(Conversation.ended_at) >= now - CALLS_WITHIN,
                col(Conversation.summary).is_not(None),
                col(Conversation.summary) != "",
            )
            .order_by(col(Conversation.ended_at).desc())
            .limit(RECENT_CALLS)
        )
    ).all()
    return [
        {"date": ended.astimezone(zone).date().isoformat(), "summary": _clip(summary)}
        for ended, summary in rows
        if ended is not None and summary
    ]


async def recent_messages(s: AsyncSession, user_id: uuid.UUID, now: datetime) -> list[dict[str, str]]:
    """The last turns of the caller's voice messages, oldest first: [{"from", "text"}] where "from"
    is "caller" or "companion"."""
    rows = (
        await s.execute(
            select(Turn.role, Turn.text)
            .join(Conversation, col(Conversation.id) == col(Turn.conversation_id))
            .where(
                col(Conversation.user_id) == user_id,
                col(Conversation.kind) == "messages",
                col(Turn.role).in_(("user", "assistant")),
                col(Turn.status) == "completed",
                col(Turn.text) != "",
                col(Turn.started_at) >= now - MESSAGES_WITHIN,
            )
            .order_by(col(Turn.started_at).desc())
            .limit(RECENT_MESSAGE_TURNS)
        )
    ).all()
    return [
        {"from": "caller" if role == "user" else "companion", "text": _clip(text)}
        for role, text in reversed(rows)
    ]
