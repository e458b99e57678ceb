"""Finding a caller's memories by words, people, place and era, best match first.

PostgreSQL ranks with `ts_rank` over a weighted `simple` tsvector (the GIN index of migration
0003_companion is over exactly `PG_VECTOR`); SQLite ranks with FTS5's `bm25` over `memory_fts`
(same weights: title and people 3, place 2, body 1). Query words become prefix terms joined by OR,
so a name finds "영희랑" and "영희가", and the best-covered memory comes first. Korean particles are
cut from the words asked for ("영희랑" asks for "영희"), and filler words ("memory", "추억") are
dropped, since they match everything. An era ("1968", "1960s", "60년대") keeps the memories whose
`happened_on` falls in it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import Memory

PG_VECTOR = (
    "setweight(to_tsvector('simple', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce((people::jsonb)::text, '')), 'A') || "
    "setweight(to_tsvector('simple', coalesce(place, '')), 'B') || "
    "setweight(to_tsvector('simple', coalesce(body, '')), 'C')"
)
MAX_TERMS = 12
# Longest first, so "에서" is cut before "에".
_PARTICLES = (
    "에서는", "이랑", "하고", "에게", "한테", "께서", "에서", "으로", "부터", "까지",
    "은", "는", "이", "가", "을", "를", "에", "와", "과", "랑", "의", "도", "로",
)  # fmt: skip
_FILLER = frozenset({
    "the", "a", "an", "of", "my", "our", "about", "and", "or", "with", "in", "on", "at", "to",
    "for", "me", "i", "you", "tell", "story", "stories", "memory", "memories", "remember", "time",
    "추억", "이야기", "얘기", "기억", "그때", "그", "저", "제", "우리", "내",
})  # fmt: skip
_ERA = re.compile(r"(\d{4}|\d{2})('?s|년대|년)?")


def terms(*texts: str | None) -> list[str]:
    """The search terms in `texts`: words of letters and digits, particles cut, filler dropped."""
    found: list[str] = []
    for text in texts:
        for word in re.findall(r"\w+", (text or "").lower()):
            if re.fullmatch(r"[가-힣]+", word):
                for particle in _PARTICLES:
                    if word.endswith(particle) and len(word) - len(particle) >= 2:
                        word = word[: -len(particle)]
                        break
            if word not in _FILLER and word not in found:
                found.append(word)
    return found[:MAX_TERMS]


def era_prefix(era: str | None) -> str | None:
    """The `happened_on` prefix of an era: "1968" -> "1968", "1960s"/"1960년대" -> "196", "60s" -> "196".

    Raises ValueError for an era we cannot read.
    """
    if era is None or not era.strip():
        return None
    m = _ERA.fullmatch(era.strip().lower().replace(" ", ""))
    if m is None or (len(m.group(1)) == 2 and m.group(2) in (None, "년")):
        raise ValueError(f"era {era!r} should be a year like 1968 or a decade like 1960s")
    digits, decade = m.group(1), m.group(2) not in (None, "년")
    if len(digits) == 2:  # "60s": the 1900s
        return "19" + digits[0]
    return digits[:3] if decade else digits


async def find(
    session: AsyncSession,
    user_id: uuid.UUID,
    words: Sequence[str],
    *,
    era: str | None = None,
    limit: int = 5,
) -> list[Memory]:
    """The user's memories matching any of `words` (already `terms()`), most relevant first.

    Without words: the memories of the era, oldest first. Neither: the newest memories.
    """
    era_filter = [col(Memory.happened_on).startswith(era)] if era else []
    owner = col(Memory.user_id) == user_id
    if not words:
        order = col(Memory.happened_on) if era else col(Memory.created_at).desc()
        rows = await session.execute(sa.select(Memory).where(owner, *era_filter).order_by(order).limit(limit))
        return list(rows.scalars())
    if session.get_bind().dialect.name == "postgresql":
        tsquery = sa.func.to_tsquery(
            sa.literal_column("'simple'::regconfig"), sa.bindparam("q", " | ".join(f"{w}:*" for w in words))
        )
        vector: sa.ColumnElement[Any] = sa.literal_column(f"({PG_VECTOR})")
        stmt = (
            sa.select(Memory)
            .where(owner, vector.op("@@")(tsquery), *era_filter)
            .order_by(sa.func.ts_rank(vector, tsquery).desc(), col(Memory.created_at).desc())
            .limit(limit)
        )
        return list((await session.execute(stmt)).scalars())
    query = " OR ".join('"' + w.replace('"', '""') + '"*' for w in words)
    ranked = sa.text(
        "SELECT memory_fts.memory_id FROM memory_fts JOIN memory ON memory.id = memory_fts.memory_id "
        "WHERE memory_fts MATCH :q AND memory.user_id = :uid "
        + ("AND memory.happened_on LIKE :era " if era else "")
        + "ORDER BY bm25(memory_fts, 0, 0, 3.0, 1.0, 2.0, 3.0), memory.created_at DESC LIMIT :limit"
    ).bindparams(sa.bindparam("uid", type_=sa.Uuid()))
    params: dict[str, object] = {"q": query, "uid": user_id, "limit": limit}
    if era:
        params["era"] = era + "%"
    ids = [uuid.UUID(str(row[0])) for row in (await session.execute(ranked, params)).all()]
    if not ids:
        return []
    rows = await session.execute(sa.select(Memory).where(col(Memory.id).in_(ids)))
    found = {m.id: m for m in rows.scalars()}
    return [found[i] for i in ids if i in found]
