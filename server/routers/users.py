"""The logged-in user's own profile: `GET /v1/users/me` and `PATCH /v1/users/me`."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import CurrentUser, SessionDep
from server.schemas.users import UserPublic, UserUpdate

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("/me", response_model=UserPublic)
async def read_me(user: CurrentUser) -> UserPublic:
    """The profile: name, birth year, language (ko|en), speech rate, time zone, picture."""
    return UserPublic.model_validate(user)


@router.patch("/me", response_model=UserPublic)
async def update_me(body: UserUpdate, user: CurrentUser, session: SessionDep) -> UserPublic:
    """Change only the fields sent; answer the whole profile."""
    user.sqlmodel_update(body.model_dump(exclude_unset=True))
    session.add(user)
    await session.commit()
    return UserPublic.model_validate(user)
