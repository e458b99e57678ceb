"""Short-lived signed URLs that let Replicate fetch one user photo, and the route that serves them.

Luma Ray needs the starting photo at a URL it can reach. User media is never public, so we hand
out `GET /v1/public/photos/{id}?exp=<unix s>&sig=<HMAC>` on `public_base_url`: it serves only the
medium variant, only until `exp`, and only with a signature made with a key derived from the JWT
secret (a separate label, so a signature is never valid as anything else).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from fastapi import APIRouter, HTTPException, Query, Response, status

from server.deps import ServicesDep, SessionDep
from server.settings import Settings
from storage import MediaNotFound
from storage.models import Photo

router = APIRouter(prefix="/v1/public", tags=["public"])

_LABEL = b"silvertalk/public-photo-url/v1"


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.jwt_secret.encode(), _LABEL, hashlib.sha256).digest()


def signature(settings: Settings, photo_id: uuid.UUID, exp: int) -> str:
    mac = hmac.new(_key(settings), f"{photo_id}.{exp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_photo_url(settings: Settings, photo_id: uuid.UUID, *, now: float | None = None) -> str:
    """An absolute URL for the photo's medium variant, valid for `generation_signed_url_ttl_s`."""
    if not settings.public_base_url:
        raise ValueError("signed photo URLs need SILVERTALK_PUBLIC_BASE_URL")
    exp = int((now if now is not None else time.time()) + settings.generation_signed_url_ttl_s)
    base = settings.public_base_url.rstrip("/")
    return f"{base}/v1/public/photos/{photo_id}?exp={exp}&sig={signature(settings, photo_id, exp)}"


def verify(settings: Settings, photo_id: uuid.UUID, exp: int, sig: str, *, now: float | None = None) -> bool:
    """True for a signature we made that has not expired (compared in constant time)."""
    if exp < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature(settings, photo_id, exp), sig)


@router.get("/photos/{photo_id}")
async def public_photo(
    photo_id: str, services: ServicesDep, session: SessionDep, exp: int = Query(), sig: str = Query()
) -> Response:
    """The medium JPEG of a photo, for whoever holds a valid, unexpired signed link."""
    from server.photostore import media_key

    try:
        pid = uuid.UUID(photo_id)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found") from None
    if not verify(services.settings, pid, exp, sig):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "This link is invalid or has expired")
    photo = await session.get(Photo, pid)
    if photo is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found")
    try:
        data = await services.media.get(media_key(photo.id, "medium"))
    except MediaNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not found") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
