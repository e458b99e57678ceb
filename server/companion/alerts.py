"""Alerts: words of emergency heard in a call, stored and sent to the caregiver's webhook.

`AlertSender.raise_alert` stores an `Alert` row and returns at once; delivery runs in a background
task the sender owns, so it never blocks or ends the call. A delivery is a POST of
`{"type": "alert.created", "timestamp", "data": {...}}` to `caregiver_webhook_url`, signed in the
Standard Webhooks scheme with `caregiver_webhook_secret` (the same `webhook-id` on every retry, so
the receiver can drop repeats; each try signed afresh). Any 2xx is delivered; anything else
(another status, a timeout, a refused connection) is retried after `caregiver_webhook_backoff_s`,
doubling up to 60 s, `caregiver_webhook_attempts` times in all, then the alert is `failed`. Each
try is written to the row (`attempts`, `last_error`). Alerts still `pending` when the server
stops are sent again by the next start (`resume`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from server import standard_webhooks
from server.settings import Settings
from storage.models import Alert, User

log = logging.getLogger("silvertalk.alerts")

MAX_BACKOFF_S = 60.0
#: Pending alerts older than this are not sent again after a restart (the moment has passed).
RESUME_WINDOW = timedelta(hours=6)


class AlertSender:
    """Stores alerts and delivers them in the background. One per app (`services.alerts`)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings, self.sessions = settings, sessions
        self.url = settings.caregiver_webhook_url
        self.secret = settings.caregiver_webhook_secret
        if self.url and not self.secret:
            raise ValueError(
                "SILVERTALK_CAREGIVER_WEBHOOK_URL needs SILVERTALK_CAREGIVER_WEBHOOK_SECRET (whsec_...): "
                "alerts are always signed"
            )
        if self.secret:
            try:
                standard_webhooks.secret_key(self.secret)
            except ValueError as e:
                raise ValueError(f"SILVERTALK_CAREGIVER_WEBHOOK_SECRET: {e}") from None
        self._http = httpx.AsyncClient(
            timeout=settings.caregiver_webhook_timeout_s, follow_redirects=False, trust_env=False
        )
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Stop delivering (unsent alerts stay `pending` for the next start) and close the client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    async def raise_alert(
        self,
        user_id: uuid.UUID,
        *,
        kind: str,
        text: str,
        language: str,
        conversation_id: uuid.UUID | None = None,
    ) -> Alert:
        """Store the alert and start its delivery; returns as soon as the row is written."""
        alert = Alert(
            user_id=user_id,
            conversation_id=conversation_id,
            kind=kind,
            text=text[:2000],
            language=language[:8],
            delivery="pending" if self.url else "not_configured",
        )
        async with self.sessions() as s:
            s.add(alert)
            await s.commit()
        log.warning("emergency words from user %s (%s): alert %s", user_id, kind, alert.id)
        if self.url:
            self._spawn(alert.id)
        return alert

    async def resume(self) -> None:
        """Send again the recent alerts a previous run left `pending`."""
        if not self.url:
            return
        since = datetime.now(UTC) - RESUME_WINDOW
        async with self.sessions() as s:
            ids = (
                await s.execute(
                    sa.select(col(Alert.id)).where(
                        col(Alert.delivery) == "pending", col(Alert.created_at) >= since
                    )
                )
            ).scalars()
            for alert_id in ids:
                self._spawn(alert_id)

    async def wait_idle(self) -> None:
        """Wait until every delivery in flight has finished (tests, shutdown tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, alert_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._deliver(alert_id), name=f"alert-{alert_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, alert_id: uuid.UUID) -> None:
        """Try until delivered or out of tries. Never raises: a failure is logged and stored."""
        try:
            body, attempts_done = await self._payload(alert_id)
        except Exception:
            log.exception("alert %s: could not read it for delivery", alert_id)
            return
        if body is None:
            return
        delay = self.settings.caregiver_webhook_backoff_s
        for attempt in range(attempts_done + 1, self.settings.caregiver_webhook_attempts + 1):
            error = await self._post(alert_id, body)
            last = attempt == self.settings.caregiver_webhook_attempts
            state = "delivered" if error is None else ("failed" if last else "pending")
            try:
                await self._record(alert_id, attempt, state, error)
            except Exception:  # the database hiccuped: keep trying to tell the caregiver anyway
                log.exception("alert %s: could not record try %d", alert_id, attempt)
            if error is None:
                log.info("alert %s delivered (try %d)", alert_id, attempt)
                return
            log.warning("alert %s: try %d failed: %s", alert_id, attempt, error)
            if not last:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def _payload(self, alert_id: uuid.UUID) -> tuple[bytes | None, int]:
        async with self.sessions() as s:
            alert = await s.get(Alert, alert_id)
            if alert is None or alert.delivery != "pending":
                return None, 0
            user = await s.get(User, alert.user_id)
        data: dict[str, Any] = {
            "alert_id": str(alert.id),
            "user": {"id": str(alert.user_id), "display_name": user.display_name if user else ""},
            "kind": alert.kind,
            "text": alert.text,
            "language": alert.language,
            "conversation_id": str(alert.conversation_id) if alert.conversation_id else None,
            "created_at": alert.created_at.isoformat(),
        }
        event = {"type": "alert.created", "timestamp": alert.created_at.isoformat(), "data": data}
        return json.dumps(event, ensure_ascii=False).encode(), alert.attempts

    async def _post(self, alert_id: uuid.UUID, body: bytes) -> str | None:
        """One signed POST; None when it was accepted, else what went wrong."""
        assert self.url is not None and self.secret is not None
        headers = standard_webhooks.headers(self.secret, f"msg_{alert_id.hex}", body)
        headers["content-type"] = "application/json"
        try:
            response = await self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _record(self, alert_id: uuid.UUID, attempt: int, state: str, error: str | None) -> None:
        async with self.sessions() as s:
            alert = await s.get(Alert, alert_id)
            if alert is None:
                return
            alert.attempts, alert.delivery, alert.last_error = attempt, state, error
            if state == "delivered":
                alert.delivered_at = datetime.now(UTC)
            await s.commit()
