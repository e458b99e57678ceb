"""`POST /v1/webhooks/replicate`: signed prediction updates from Replicate.

Verification follows Replicate's Standard Webhooks scheme (`server.standard_webhooks`, keyed with
`replicate_webhook_secret`): signature and a fresh timestamp are checked, and each `webhook-id` is
handled once (a WebhookDelivery row), because Replicate repeats deliveries. The body only queues a
check: the job still checks the generation's state, so a valid but late or odd delivery cannot
move a finished generation.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from server.deps import ServicesDep, SessionDep
from server.standard_webhooks import BadWebhook, verify
from storage.models import Generation, WebhookDelivery

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger("silvertalk.generation")


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
