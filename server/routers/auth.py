"""Login (Kakao mobile and web flows, dev login), refresh-token rotation and logout.

Every login answers the same shape: `{"access_token","refresh_token","token_type":"bearer",
"expires_in","user":{...}}`. `/auth/refresh` and `/auth/logout` need no bearer token: the refresh
token is the credential, so an app whose access token has expired can still use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from server import auth_tokens
from server.deps import ServicesDep, SessionDep, SettingsDep
from server.kakao import KakaoClient, KakaoProfile, KakaoRejected
from server.schemas.users import UserPublic
from storage.models import User

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    user: UserPublic


class KakaoLogin(BaseModel):
    """Either `access_token` (mobile: from Kakao's SDK) or `code` + `redirect_uri` (web)."""

    access_token: str | None = Field(default=None, min_length=1, max_length=4096)
    code: str | None = Field(default=None, min_length=1, max_length=2048)
    redirect_uri: str | None = Field(default=None, min_length=1, max_length=2048)

    @model_validator(mode="after")
    def _one_flow(self) -> KakaoLogin:
        mobile = self.access_token is not None
        web = self.code is not None or self.redirect_uri is not None
        if mobile == web:
            raise ValueError("send either access_token, or code and redirect_uri")
        if web and (self.code is None or self.redirect_uri is None):
            raise ValueError("the web flow needs both code and redirect_uri")
        return self


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class DevLogin(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


@router.post("/kakao", response_model=TokenPair)
async def kakao_login(body: KakaoLogin, session: SessionDep, services: ServicesDep) -> dict[str, object]:
    """Log in with Kakao; the first login creates the user. Kakao down -> 502/503, nothing stored."""
    settings = services.settings
    web = body.code is not None
    if settings.kakao_app_id is None or (web and not settings.kakao_rest_api_key):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Kakao login is not configured on this server "
            "(set SILVERTALK_KAKAO_APP_ID and SILVERTALK_KAKAO_REST_API_KEY)",
        )
    kakao = KakaoClient(
        services.http,
        app_id=settings.kakao_app_id,
        auth_url=settings.kakao_auth_url,
        api_url=settings.kakao_api_url,
        rest_api_key=settings.kakao_rest_api_key,
        client_secret=settings.kakao_client_secret,
        timeout_s=settings.kakao_timeout_s,
    )
    try:
        if web:
            assert body.code is not None and body.redirect_uri is not None  # checked by KakaoLogin
            kakao_token = await kakao.exchange_code(body.code, body.redirect_uri)
        else:
            assert body.access_token is not None
            kakao_token = body.access_token
        profile = await kakao.verify(kakao_token)
    except KakaoRejected as e:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(e)) from None
    user = await _kakao_user(session, profile)
    return await auth_tokens.issue_tokens(session, settings, user)


@router.post("/dev-login", response_model=TokenPair)
async def dev_login(body: DevLogin, session: SessionDep, settings: SettingsDep) -> dict[str, object]:
    """Tokens for a local user by name (created on first use). 404 unless SILVERTALK_DEV_LOGIN."""
    if not settings.dev_login:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    user = await _find_or_create(
        session,
        select(User).where(col(User.dev_name) == body.name),
        lambda: User(dev_name=body.name, display_name=body.name),
    )
    return await auth_tokens.issue_tokens(session, settings, user)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> dict[str, object]:
    """Spend a refresh token for a new pair. A reused token revokes its whole family -> 401."""
    try:
        return await auth_tokens.rotate(session, settings, body.refresh_token)
    except auth_tokens.RefreshRefused as e:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(e)) from None


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, session: SessionDep) -> None:
    """Revoke the refresh token's family. Always 204, so it can't probe which tokens exist.

    Access tokens already issued stay valid until they expire (at most access_token_ttl_s).
    """
    await auth_tokens.revoke(session, body.refresh_token)


async def _kakao_user(session: AsyncSession, profile: KakaoProfile) -> User:
    user = await _find_or_create(
        session,
        select(User).where(col(User.kakao_id) == profile.kakao_id),
        lambda: User(
            kakao_id=profile.kakao_id,
            display_name=(profile.nickname or "")[:100],
            profile_image_url=profile.profile_image_url,
        ),
    )
    # The picture follows Kakao; the display name is the user's own once they have it.
    if profile.profile_image_url and user.profile_image_url != profile.profile_image_url:
        user.profile_image_url = profile.profile_image_url
        await session.commit()
    return user


async def _find_or_create(
    session: AsyncSession, query: SelectOfScalar[User], make: Callable[[], User]
) -> User:
    """Find the one user matching `query`, or insert `make()`; a concurrent insert wins cleanly."""
    found = (await session.execute(query)).scalars().first()
    if found is not None:
        return found
    user = make()
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        # Two first logins at once: the unique index let one through; use that one.
        await session.rollback()
        found = (await session.execute(query)).scalars().first()
        if found is None:
            raise
        return found
    return user
