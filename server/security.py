"""Our own tokens: short-lived JWT access tokens and opaque, rotating refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from server import ServerError
from server.settings import Settings

ALGORITHM = "HS256"


class InvalidToken(ServerError):
    """An access token that is malformed, forged, expired or meant for someone else."""


def create_access_token(settings: Settings, user_id: uuid.UUID, *, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.access_token_ttl_s)).timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> uuid.UUID:
    """Return the user id in a valid token; raise InvalidToken otherwise (RFC 8725 checks)."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        return uuid.UUID(claims["sub"])
    except (jwt.PyJWTError, ValueError, KeyError) as e:
        raise InvalidToken(str(e)) from e


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token and the hash we store (never the token itself)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
