"""The cursor page every list endpoint answers with: `{"items": [...], "next_cursor": str | null}`.

Lists are keyset-paginated on (timestamp, id): stable under inserts, no OFFSET scans. The cursor is
opaque to clients (base64 of the last row's key) and a tampered one answers 422.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from server import recurrence

T = TypeVar("T")

DEFAULT_LIMIT = 30
MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def calendar_time(when: datetime | None) -> datetime | None:
    """Pydantic check: a time in the years 1900-2200 (ValueError, so a 422, otherwise).

    Far dates have no use here and near year 1 or 9999 an offset overflows the UTC conversion.
    """
    if when is not None:
        recurrence.check_year(when, "time")
    return when


def encode_cursor(key: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([key.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (key, id) inside a cursor; HTTP 422 for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, row_id = json.loads(raw)
        when = datetime.fromisoformat(key)
        if when.tzinfo is None:
            raise ValueError("naive cursor")
        recurrence.check_year(when, "cursor")  # also: no offset overflow at year 1 or 9999
        return when, uuid.UUID(row_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError) as e:
        raise HTTPException(422, "Invalid cursor") from e


async def fetch_page(
    session: AsyncSession,
    stmt: sa.Select[Any],
    *,
    key: Any,
    id_col: Any,
    limit: int,
    cursor: str | None,
    row_key: Callable[[Any], tuple[datetime, uuid.UUID]],
    descending: bool = True,
) -> tuple[Sequence[Any], str | None]:
    """Run `stmt` ordered by (key, id) from `cursor`; return up to `limit` rows and the next cursor.

    `row_key` reads (key, id) back from a result row to build the next cursor.
    """
    if cursor is not None:
        after_key, after_id = decode_cursor(cursor)
        if descending:
            stmt = stmt.where(sa.or_(key < after_key, sa.and_(key == after_key, id_col < after_id)))
        else:
            stmt = stmt.where(sa.or_(key > after_key, sa.and_(key == after_key, id_col > after_id)))
    order = (key.desc(), id_col.desc()) if descending else (key.asc(), id_col.asc())
    rows = (await session.execute(stmt.order_by(*order).limit(limit + 1))).all()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(*row_key(rows[-1]))
