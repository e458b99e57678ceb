"""Dependency aliases so a route signature reads like a sentence: `session: SessionDep, user: CurrentUser`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from server.security import InvalidToken, decode_access_token
from server.settings import Settings
from storage.models import User

if TYPE_CHECKING:
    from server.services import Services

_bearer = HTTPBearer(auto_error=False)


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated["Services", Depends(get_services)]


def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

UNAUTHORIZED = HTTPException(
    status.HTTP_401_UNAUTHORIZED, "Invalid or expired access token", headers={"WWW-Authenticate": "Bearer"}
)


async def get_current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if creds is None or creds.scheme.lower() != "bearer":
        raise UNAUTHORIZED
    try:
        user_id = decode_access_token(settings, creds.credentials)
    except InvalidToken:
        raise UNAUTHORIZED from None
    user = await session.get(User, user_id)
    if user is None:
        raise UNAUTHORIZED
    await request.app.state.services.rate_limiter.check(str(user.id))
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def parse_uuid(value: str) -> uuid.UUID:
    """Path ids that are not UUIDs are simply not found (no 422 that reveals the id format)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found") from None
