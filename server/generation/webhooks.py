"""`POST /v1/webhooks/replicate`: signed prediction updates from Replicate.

Verification follows Replicate's (Standard Webhooks) scheme: the key is the base64 after the
`whsec_` prefix of `replicate_webhook_secret`; the signed content is `{id}.{timestamp}.{raw body}`;
`webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` entries, any of which may
match (compared in constant time). A timestamp more than five minutes off is refused, so a captured
delivery cannot be replayed later, and each `webhook-id` is handled once (a WebhookDelivery row),
because Replicate repeats deliveries. The body only queues a check: the job still checks the
generation's state, so a valid but late or odd delivery cannot move a finished generation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from server import ServerError
from server.deps import ServicesDep, SessionDep
from storage.models import Generation, WebhookDelivery

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger("silvertalk.generation")

TOLERANCE_S = 5 * 60


class BadWebhook(ServerError):
    """A delivery we refuse; the message says why (and is safe to return)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret."""
    body = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("SILVERTALK_REPLICATE_WEBHOOK_SECRET must be whsec_<base64>") from e


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The `v1,<base64>` signature for one delivery (also used by the test fake)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> str:
    """Return the webhook id of a genuine, fresh delivery; raise BadWebhook otherwise."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp or not signatures or len(webhook_id) > 128:
        raise BadWebhook("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadWebhook("webhook-timestamp is not a number") from None
    if abs((now if now is not None else time.time()) - sent_at) > TOLERANCE_S:
        raise BadWebhook("webhook-timestamp is too old or too far in the future")
    expected = sign(secret, webhook_id, sent_at, body).split(",", 1)[1]
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return webhook_id
    raise BadWebhook("webhook-signature does not match")


@router.post("/replicate", status_code=status.HTTP_200_OK)
async def replicate_webhook(request: Request, services: ServicesDep, session: SessionDep) -> dict[str, str]:
    """Verify, de-duplicate, and queue a check of the generation with this prediction."""
    secret = services.settings.replicate_webhook_secret
    if not secret:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "Webhooks are not configured on this server")
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        webhook_id = verify(secret, headers, body)
    except BadWebhook as e:
        log.warning("replicate webhook refused: %s", e)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"Webhook refused: {e}") from None
    try:
        prediction = json.loads(body)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Webhook body is not JSON") from None
    if not isinstance(prediction, dict) or not isinstance(prediction.get("id"), str):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Webhook body is not a prediction")
    session.add(WebhookDelivery(webhook_id=webhook_id))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return {"status": "duplicate"}
    generation_id = await session.scalar(
        sa.select(col(Generation.id)).where(col(Generation.prediction_id) == prediction["id"])
    )
    worker = services.generation
    if generation_id is None or worker is None:
        return {"status": "ignored"}
    await worker.deliver(generation_id, prediction)
    return {"status": "accepted"}
