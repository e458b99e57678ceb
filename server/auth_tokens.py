"""Issuing our token pair, rotating refresh tokens, and revoking a whole token family.

A login starts a *family*; each refresh marks the presented token used and issues the next one in
the same family. Presenting a used token again means it was copied (RFC 6819 §5.2.2.3 / OAuth 2.0
Security BCP §4.14): the whole family is revoked, so the thief and the user are both logged out.
Only the SHA-256 of a refresh token is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from server import ServerError
from server.schemas.users import UserPublic
from server.security import create_access_token, hash_refresh_token, new_refresh_token
from server.settings import Settings
from storage.models import RefreshToken, User


class RefreshRefused(ServerError):
    """The refresh token is unknown, expired, revoked, or was already used (family now revoked)."""


async def issue_tokens(
    session: AsyncSession, settings: Settings, user: User, *, family_id: uuid.UUID | None = None
) -> dict[str, object]:
    """Store a new refresh token (a new family unless given) and commit; return the API answer."""
    now = datetime.now(UTC)
    # Expired rows can no longer be used or replayed to any effect: drop them as we go.
    await session.execute(
        sa.delete(RefreshToken).where(
            col(RefreshToken.user_id) == user.id, col(RefreshToken.expires_at) < now
        )
    )
    token, token_hash = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=token_hash,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl_s),
        )
    )
    await session.commit()
    return {
        "access_token": create_access_token(settings, user.id, now=now),
        "refresh_token": token,
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl_s,
        "user": UserPublic.model_validate(user),
    }


async def rotate(session: AsyncSession, settings: Settings, refresh_token: str) -> dict[str, object]:
    """Spend `refresh_token` and answer a fresh pair in the same family; raise RefreshRefused."""
    now = datetime.now(UTC)
    row = await _find(session, refresh_token)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise RefreshRefused("Refresh token is invalid, expired or revoked")
    family_id, user_id = row.family_id, row.user_id  # read before a rollback expires `row`
    # Conditional update: of two concurrent refreshes with the same token exactly one wins, and
    # the loser is treated as a replay.
    spent = await session.execute(
        sa.update(RefreshToken)
        .where(
            col(RefreshToken.id) == row.id,
            col(RefreshToken.used_at).is_(None),
            col(RefreshToken.revoked_at).is_(None),
        )
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        await revoke_family(session, family_id)
        raise RefreshRefused("Refresh token was already used; every session from that login is revoked")
    user = await session.get(User, user_id)
    if user is None:
        await session.rollback()
        raise RefreshRefused("Refresh token is invalid, expired or revoked")
    return await issue_tokens(session, settings, user, family_id=family_id)


async def revoke(session: AsyncSession, refresh_token: str) -> None:
    """Log out: revoke the family of `refresh_token`. Unknown tokens are ignored (nothing to revoke)."""
    row = await _find(session, refresh_token)
    if row is not None:
        await revoke_family(session, row.family_id)


async def revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        sa.update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await session.commit()


async def _find(session: AsyncSession, refresh_token: str) -> RefreshToken | None:
    result = await session.execute(
        select(RefreshToken).where(col(RefreshToken.token_hash) == hash_refresh_token(refresh_token))
    )
    return result.scalars().first()
