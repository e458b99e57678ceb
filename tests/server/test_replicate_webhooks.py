"""`POST /v1/webhooks/replicate`: real signatures from the fake; tampered, stale and repeated deliveries."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from server.standard_webhooks import BadWebhook, sign, verify
from storage import db
from storage.models import WebhookDelivery, utcnow
from tests.fakes.replicate import FakeReplicate, live_app, login, wait_for

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate(webhook_secret=SECRET) as f:
        yield f


def test_webhook_alone_completes_a_generation(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """With polling slowed to a crawl, the signed completion webhook finishes the generation promptly."""
    opts: dict[str, Any] = {"generation_poll_interval_s": 60.0, "generation_poll_max_interval_s": 60.0}
    with live_app(tmp_path, db_url, fake, **opts) as (_live, client):
        headers, _ = login(client, "kim")
        started = time.monotonic()
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        done = wait_for(client, headers, gid, {"succeeded", "failed"}, timeout=15)
        assert done["status"] == "succeeded" and time.monotonic() - started < 15
        assert fake.answered() == [200]


def test_tampered_stale_and_duplicate_deliveries(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Tampered and stale deliveries are refused (401) and change nothing; a repeat is handled once."""
    fake.deliver_webhooks = False
    opts: dict[str, Any] = {"generation_poll_interval_s": 60.0, "generation_poll_max_interval_s": 60.0}
    with live_app(tmp_path, db_url, fake, **opts) as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        wait_for(client, headers, gid, {"running"})
        # "running" is set as the slot is claimed, a moment before the create request is sent.
        deadline = time.monotonic() + 30
        while not fake.predictions:
            assert time.monotonic() < deadline, "the prediction was never created"
            time.sleep(0.05)
        (prediction,) = fake.predictions.values()
        while prediction.status() != "succeeded":
            time.sleep(0.05)
        tampered = fake.send_webhook(prediction.id, tamper=True)
        assert tampered.status_code == 401 and "does not match" in tampered.json()["detail"]
        stale = fake.send_webhook(prediction.id, timestamp=int(time.time()) - 6 * 60)
        assert stale.status_code == 401 and "too old" in stale.json()["detail"]
        time.sleep(0.3)
        assert client.get(f"/v1/generations/{gid}", headers=headers).json()["status"] == "running"
        good = fake.send_webhook(prediction.id, webhook_id="msg_once")
        assert good.status_code == 200 and good.json() == {"status": "accepted"}
        repeat = fake.send_webhook(prediction.id, webhook_id="msg_once")
        assert repeat.status_code == 200 and repeat.json() == {"status": "duplicate"}
        assert wait_for(client, headers, gid, {"succeeded", "failed"}, timeout=10)["status"] == "succeeded"
        photos = client.get("/v1/photos", headers=headers).json()["items"]
        assert len(photos) == 1  # stored once
        unknown = fake.send_webhook(prediction.id, webhook_id="msg_late")
        assert unknown.json() == {"status": "accepted"}
        time.sleep(0.3)
        assert len(client.get("/v1/photos", headers=headers).json()["items"]) == 1


def test_webhooks_refused_without_a_secret(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Without a configured secret no delivery is trusted."""
    with live_app(tmp_path, db_url, fake, replicate_webhook_secret=None) as (_live, client):
        r = client.post("/v1/webhooks/replicate", content=b"{}", headers={"webhook-id": "x"})
        assert r.status_code == 503


def test_verify_accepts_any_matching_signature_of_several() -> None:
    """During secret rotation a header carries several signatures; one match is enough."""
    body = b'{"id":"p1","status":"succeeded"}'
    now = int(time.time())
    good = sign(SECRET, "msg_1", now, body)
    other = sign("whsec_" + base64.b64encode(b"another secret, another key!!").decode(), "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": f"{other} {good}"}
    assert verify(SECRET, headers, body) == "msg_1"
    with pytest.raises(BadWebhook, match="does not match"):
        verify(SECRET, {**headers, "webhook-signature": other}, body)
    with pytest.raises(BadWebhook, match="too old or too far in the future"):
        verify(SECRET, headers, body, now=now + 301)
    with pytest.raises(BadWebhook, match="missing"):
        verify(SECRET, {"webhook-id": "msg_1"}, body)


def test_sweep_forgets_webhook_ids_too_old_to_repeat(
    tmp_path: Path, db_url: str, fake: FakeReplicate
) -> None:
    """Webhook ids older than an hour are deleted by the sweep; recent ones stay to refuse repeats."""

    async def ids(add: bool) -> set[str]:
        engine = db.create_engine(db_url)
        try:
            async with db.session_factory(engine)() as s:
                if add:
                    s.add(WebhookDelivery(webhook_id="msg_old", received_at=utcnow() - timedelta(hours=2)))
                    s.add(WebhookDelivery(webhook_id="msg_new", received_at=utcnow() - timedelta(minutes=10)))
                    await s.commit()
                return set((await s.scalars(sa.select(WebhookDelivery.webhook_id))).all())
        finally:
            await engine.dispose()

    with live_app(tmp_path, db_url, fake):
        assert asyncio.run(ids(add=True)) >= {"msg_new"}
        deadline = time.monotonic() + 10
        while asyncio.run(ids(add=False)) != {"msg_new"}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
