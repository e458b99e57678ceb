"""Standard Webhooks signatures (standardwebhooks.com), for deliveries we receive and send.

Replicate signs the webhooks it sends us this way, and we sign the alerts we send to a caregiver's
endpoint the same way. The secret is `whsec_<base64 key>`; the signed content is
`{webhook-id}.{webhook-timestamp}.{raw body}`; `webhook-signature` holds space-separated
`v1,<base64 HMAC-SHA256>` entries, any of which may match (compared in constant time). A timestamp
more than five minutes off is refused, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from server import ServerError

TOLERANCE_S = 5 * 60


class BadWebhook(ServerError):
    """A delivery we refuse; the message says why (and is safe to return)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret; ValueError when it is not one."""
    body = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("a webhook secret must be whsec_<base64>") from e
    if not key:
        raise ValueError("a webhook secret must be whsec_<base64>")
    return key


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes) -> str:
    """The `v1,<base64>` signature for one delivery."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, webhook_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The three headers of a delivery of `body`, signed now (each retry is signed afresh)."""
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> str:
    """Return the webhook id of a genuine, fresh delivery; raise BadWebhook otherwise.

    `headers` must have lower-case names.
    """
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
