"""Alerts on SQLite and PostgreSQL: stored, listed to their user only, and sent to the caregiver's
webhook, signed (Standard Webhooks) and retried with backoff, never holding up the caller."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.companion.call import CallCompanion
from storage.models import Alert, User
from tests.conftest import dev_login, free_port, make_settings
from tests.fakes.caregiver import Caregiver
from tests.server.test_conversations import user_id

SECRET = "whsec_" + base64.b64encode(b"caregiver-webhook-secret-32bytes").decode()


def app_client(tmp_path: Path, db_url: str, url: str | None, **overrides: Any) -> TestClient:
    settings = make_settings(
        tmp_path, db_url, caregiver_webhook_url=url, caregiver_webhook_secret=SECRET if url else None,
        caregiver_webhook_backoff_s=0.05, caregiver_webhook_attempts=4, **overrides,
    )  # fmt: skip
    return TestClient(create_app(settings))


def raise_alert(client: TestClient, auth: dict[str, str], text: str = "가슴이 아파요") -> tuple[Alert, float]:
    """Raise an alert as the call would; return it and how long raising took (s)."""
    sender = client.app.state.services.alerts  # type: ignore[attr-defined]
    assert client.portal is not None
    started = time.monotonic()
    alert = client.portal.call(
        lambda: sender.raise_alert(user_id(client, auth), kind="chest_pain", text=text, language="ko")
    )
    return alert, time.monotonic() - started


def settle(client: TestClient) -> None:
    sender = client.app.state.services.alerts  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(sender.wait_idle)


@pytest.fixture
def receiver() -> Iterator[Caregiver]:
    with Caregiver(SECRET, fail_first=1) as r:
        yield r


def test_alert_is_signed_retried_and_delivered(tmp_path: Path, db_url: str, receiver: Caregiver) -> None:
    """The first delivery fails, the retry succeeds; both carry one webhook-id and a valid signature."""
    with app_client(tmp_path, db_url, receiver.url) as client:
        auth = dev_login(client, "kim")
        alert, took = raise_alert(client, auth)
        assert took < 1.0 and alert.delivery == "pending"
        [listed] = client.get("/v1/alerts", headers=auth).json()["items"]
        assert listed["id"] == str(alert.id) and listed["text"] == "가슴이 아파요"
        settle(client)
        [done] = client.get("/v1/alerts", headers=auth).json()["items"]
        assert done["delivery"] == "delivered" and done["attempts"] == 2 and done["delivered_at"]
        assert client.get("/v1/alerts", headers=dev_login(client, "lee")).json()["items"] == []
    assert [d.status for d in receiver.deliveries] == [503, 200]
    assert all(d.signature_valid for d in receiver.deliveries)
    first, second = receiver.deliveries
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{alert.id.hex}"
    assert abs(int(second.headers["webhook-timestamp"]) - time.time()) < 60
    body = second.body
    assert body["type"] == "alert.created" and body["data"]["kind"] == "chest_pain"
    assert body["data"]["text"] == "가슴이 아파요" and body["data"]["user"]["display_name"] == "kim"


def test_receiver_down_ends_as_failed_and_the_app_goes_on(tmp_path: Path, db_url: str) -> None:
    """A receiver that never accepts (or a closed port) uses up the tries; the alert says failed and why."""
    with Caregiver(SECRET, fail_always=True) as down:
        with app_client(tmp_path, db_url, down.url) as client:
            auth = dev_login(client, "kim")
            raise_alert(client, auth)
            settle(client)
            [alert] = client.get("/v1/alerts", headers=auth).json()["items"]
            assert (
                alert["delivery"] == "failed" and alert["attempts"] == 4 and alert["last_error"] == "HTTP 503"
            )
            assert client.get("/v1/users/me", headers=auth).status_code == 200
        assert len(down.deliveries) == 4
    closed = f"http://127.0.0.1:{free_port()}/hooks"
    with app_client(tmp_path, db_url, closed) as client:
        auth = dev_login(client, "kim")
        raise_alert(client, auth, "살려줘요")
        settle(client)
        newest = client.get("/v1/alerts", headers=auth).json()["items"][0]
        assert newest["delivery"] == "failed" and "ConnectError" in newest["last_error"]


def test_without_a_webhook_alerts_are_only_stored(tmp_path: Path, db_url: str) -> None:
    """With no caregiver URL the alert is stored as not_configured and nothing is sent."""
    with app_client(tmp_path, db_url, None) as client:
        auth = dev_login(client, "kim")
        alert, _ = raise_alert(client, auth)
        settle(client)
        [listed] = client.get("/v1/alerts", headers=auth).json()["items"]
        assert listed["delivery"] == "not_configured" and listed["attempts"] == 0
        assert uuid.UUID(listed["id"]) == alert.id


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"caregiver_webhook_url": "http://127.0.0.1:9/x"}, "needs SILVERTALK_CAREGIVER_WEBHOOK_SECRET"),
        (
            {"caregiver_webhook_url": "http://127.0.0.1:9/x", "caregiver_webhook_secret": "whsec_%%%"},
            "whsec_",
        ),
    ],
)
def test_unsigned_or_malformed_secret_fails_the_start(
    tmp_path: Path, sqlite_url: str, overrides: dict[str, Any], message: str
) -> None:
    """A caregiver URL without a usable secret stops the server from starting, with a clear message."""
    settings = make_settings(tmp_path, sqlite_url, **overrides)
    with pytest.raises(ValueError, match=message), TestClient(create_app(settings)):
        pass


def test_emergency_words_in_a_call_raise_the_alert(tmp_path: Path, db_url: str, receiver: Caregiver) -> None:
    """The call's emergency check answers calmly with the configured number and raises a signed alert;
    ordinary words raise nothing."""
    with app_client(tmp_path, db_url, receiver.url, emergency_number="112") as client:
        auth = dev_login(client, "kim")
        services = client.app.state.services  # type: ignore[attr-defined]

        async def check(text: str) -> str | None:
            async with services.sessions() as s:
                user = await s.get(User, user_id(client, auth))
            return await CallCompanion(services, user, language="ko").emergency_reply(text)

        assert client.portal is not None
        assert client.portal.call(check, "오늘 날씨가 좋네요") is None
        said = client.portal.call(check, "아이고 넘어졌어요, 일어날 수가 없어요")
        assert said is not None and "112" in said and "가족" in said
        settle(client)
        [alert] = client.get("/v1/alerts", headers=auth).json()["items"]
        assert alert["kind"] == "fall" and alert["delivery"] == "delivered"
    assert receiver.deliveries[-1].body["data"]["text"] == "아이고 넘어졌어요, 일어날 수가 없어요"
    assert all(d.signature_valid for d in receiver.deliveries)
