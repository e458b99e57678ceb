"""Generations end to end: our app on a real socket, the fake Replicate, both databases."""

from __future__ import annotations

import asyncio
import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from PIL import Image

from storage import db
from storage.models import MemoryPhoto
from tests.fakes.replicate import FakeReplicate, add_memory, live_app, login, upload_photo, wait_for
from tests.jobs.cluster import wait_until


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    with FakeReplicate() as f:
        yield f


def memory_photo_ids(db_url: str, memory_id: uuid.UUID) -> list[uuid.UUID]:
    async def read() -> list[uuid.UUID]:
        engine = db.create_engine(db_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(MemoryPhoto.__table__.c.photo_id).where(  # type: ignore[attr-defined]
                        MemoryPhoto.__table__.c.memory_id == memory_id  # type: ignore[attr-defined]
                    )
                )
                return [uuid.UUID(str(r[0])) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


class CallsRecorder:
    """Stands in for the realtime call registry's `push(user_id, event)` interface."""

    def __init__(self) -> None:
        self.events: list[tuple[uuid.UUID, dict[str, Any]]] = []
        self.lock = threading.Lock()

    async def push(self, user_id: uuid.UUID, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((user_id, event))


def test_image_from_memory_end_to_end(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """A memory becomes a new gallery photo with thumbnails, linked to the memory, via a webhook."""
    with live_app(tmp_path, db_url, fake) as (live, client):
        calls = CallsRecorder()
        app: FastAPI = live.server.config.app  # type: ignore[assignment]
        app.state.services.calls = calls
        headers, user_id = login(client, "kim")
        memory_id = add_memory(
            db_url,
            user_id,
            title="부산 바닷가의 우리 집",
            body="여름이면 창문으로 파도 소리가 들렸다.",
            happened_on="1968-07",
            place="Busan",
        )
        r = client.post(
            "/v1/generations", headers=headers, json={"kind": "image", "memory_id": str(memory_id)}
        )
        assert r.status_code == 202, r.text
        created = r.json()
        assert created["status"] == "queued" and created["kind"] == "image" and created["created_at"]
        assert "부산 바닷가의 우리 집" in created["prompt"] and "late 1960s" in created["prompt"]
        done = wait_for(client, headers, created["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert done["progress"] == 1.0 and done["error"] is None
        photo = done["result"]["photo"]
        # The webhook went to our public URL, filtered to completion, and was accepted.
        body = fake.creates[-1]
        assert body["webhook"] == f"{live.url}/v1/webhooks/replicate"
        assert body["webhook_events_filter"] == ["completed"]
        assert body["input"]["aspect_ratio"] == "4:3" and body["input"]["output_format"] == "webp"
        assert 200 in fake.answered()
        # The output was fetched without our API token.
        assert fake.file_requests and all("authorization" not in h for h in fake.file_requests)
        gallery = client.get("/v1/photos", headers=headers).json()["items"]
        assert [p["id"] for p in gallery] == [photo["id"]]
        assert gallery[0]["source"] == "generated" and gallery[0]["caption"] == "부산 바닷가의 우리 집"
        for size in ("thumb", "medium", "original"):
            f = client.get(f"/v1/photos/{photo['id']}/file", params={"size": size}, headers=headers)
            assert f.status_code == 200
            Image.open(io.BytesIO(f.content)).verify()
        assert memory_photo_ids(db_url, memory_id) == [uuid.UUID(photo["id"])]
        statuses = [e["generation"]["status"] for uid, e in calls.events if uid == user_id]
        assert statuses[0] == "running" and statuses[-1] == "succeeded"
        assert all(e["type"] == "silvertalk.generation.updated" for _, e in calls.events)


def test_video_from_own_photo_end_to_end(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """A photo becomes an MP4 with a poster; Replicate fetched the photo through a signed link."""
    with live_app(tmp_path, db_url, fake) as (live, client):
        headers, _ = login(client, "kim")
        photo_id = upload_photo(client, headers)
        r = client.post(
            "/v1/generations",
            headers=headers,
            json={"kind": "video", "photo_id": photo_id, "aspect_ratio": "4:3"},
        )
        assert r.status_code == 202, r.text
        done = wait_for(client, headers, r.json()["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        result = done["result"]
        assert result["content_type"] == "video/mp4"
        video = client.get(result["url"], headers=headers)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content == fake.files["output.mp4"][0]
        part = client.get(result["url"], headers={**headers, "Range": "bytes=0-11"})
        assert part.status_code == 206 and part.content[4:8] == b"ftyp"
        poster = client.get(result["poster_url"], headers=headers)
        assert poster.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(poster.content)).size == (64, 48)
        start_url = fake.creates[-1]["input"]["start_image_url"]
        assert start_url.startswith(f"{live.url}/v1/public/photos/{photo_id}?exp=")
        assert next(iter(fake.predictions.values())).start_image_status == 200
        # The signed link is for that photo only, and only with its signature.
        assert client.get(start_url.replace("sig=", "sig=x")).status_code == 403
        assert client.get(f"/v1/photos/{photo_id}/file").status_code == 401


def test_cancel_mid_run(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Cancelling a running generation cancels the prediction too; a second cancel is a conflict."""
    fake.plan(processing_s=60)
    with live_app(tmp_path, db_url, fake) as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post(
            "/v1/generations", headers=headers, json={"kind": "image", "prompt": "a red kite"}
        ).json()["id"]
        wait_for(client, headers, gid, {"running"})
        r = client.post(f"/v1/generations/{gid}/cancel", headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        # "running" comes as the prediction is being created: a cancel inside that moment stops it
        # upstream once the create has answered, just after the cancel's own answer.
        wait_until(
            lambda: [p.status() for p in fake.predictions.values()] == ["canceled"], 10, "the upstream cancel"
        )
        assert client.post(f"/v1/generations/{gid}/cancel", headers=headers).status_code == 409
        time.sleep(0.5)
        assert client.get(f"/v1/generations/{gid}", headers=headers).json()["status"] == "canceled"


def test_daily_quota(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Over the daily image quota -> 429 with Retry-After and when it resets; videos count apart."""
    with live_app(tmp_path, db_url, fake, generation_images_per_day=1) as (_live, client):
        headers, _ = login(client, "kim")
        assert (
            client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "a"}).status_code
            == 202
        )
        r = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "b"})
        assert r.status_code == 429, r.text
        retry_after = int(r.headers["Retry-After"])
        assert 0 < retry_after <= 24 * 3600
        body = r.json()
        assert body["limit"] == 1 and body["retry_after_s"] == retry_after and "daily limit" in body["detail"]
        assert body["resets_at"].endswith("+09:00")  # midnight in the user's zone (Asia/Seoul)
        other, _ = login(client, "lee")
        assert (
            client.post("/v1/generations", headers=other, json={"kind": "image", "prompt": "c"}).status_code
            == 202
        )


def test_other_users_things_are_not_found(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Another user's memory, photo or generation is a 404, never a 403."""
    with live_app(tmp_path, db_url, fake) as (_live, client):
        kim, kim_id = login(client, "kim")
        lee, _ = login(client, "lee")
        memory_id = add_memory(db_url, kim_id, title="our wedding")
        photo_id = upload_photo(client, kim)
        r = client.post("/v1/generations", headers=lee, json={"kind": "image", "memory_id": str(memory_id)})
        assert r.status_code == 404 and r.json()["detail"] == "Memory not found"
        r = client.post("/v1/generations", headers=lee, json={"kind": "video", "photo_id": photo_id})
        assert r.status_code == 404 and r.json()["detail"] == "Photo not found"
        gid = client.post(
            "/v1/generations", headers=kim, json={"kind": "video", "photo_id": photo_id}
        ).json()["id"]
        for method, path in (("GET", ""), ("POST", "/cancel"), ("GET", "/file")):
            assert client.request(method, f"/v1/generations/{gid}{path}", headers=lee).status_code == 404
        assert client.get("/v1/generations", headers=lee).json()["items"] == []
        assert client.get("/v1/generations/not-a-uuid", headers=kim).status_code == 404


def test_inputs_are_validated(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Aspect ratios outside each model's list, a video without a photo, an empty image ask -> 422."""
    with live_app(tmp_path, db_url, fake) as (_live, client):
        headers, _ = login(client, "kim")
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"kind": "image", "prompt": "x", "aspect_ratio": "7:5"},
                "aspect_ratio for a image must be one of",
            ),
            (
                {"kind": "video", "photo_id": str(uuid.uuid4()), "aspect_ratio": "2:3"},
                "aspect_ratio for a video",
            ),
            ({"kind": "video"}, "photo_id is required"),
            ({"kind": "image"}, "needs a memory_id or a prompt"),
            ({"kind": "image", "prompt": "x", "photo_id": str(uuid.uuid4())}, "only used for videos"),
        ]
        for body, words in cases:
            r = client.post("/v1/generations", headers=headers, json=body)
            assert r.status_code == 422 and words in r.json()["detail"], (body, r.text)
        assert client.post("/v1/generations", headers=headers, json={"kind": "gif"}).status_code == 422
        assert fake.creates == []


def test_failed_prediction_reads_plainly(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """A prediction that fails upstream -> failed, with the reason in plain words."""
    fake.plan(
        outcome="failed", error="NSFW content detected. Try running it again, or try a different prompt."
    )
    fake.plan(create_status=422)
    # With Prefer: wait the failure comes back in the create answer itself (201).
    with live_app(tmp_path, db_url, fake, replicate_prefer_wait_s=5) as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        done = wait_for(client, headers, gid, {"failed", "succeeded"})
        assert done["status"] == "failed"
        reason = "NSFW content detected. Try running it again, or try a different prompt."
        assert done["error"] == f"The picture could not be made: {reason}"
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        done = wait_for(client, headers, gid, {"failed", "succeeded"})
        assert done["error"].startswith(
            "The picture could not be started. Replicate refused the request's inputs"
        )


def test_transient_errors_are_retried(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """A 503 on create is retried with backoff and the generation still succeeds."""
    fake.plan(create_status=503)
    fake.plan()
    with live_app(tmp_path, db_url, fake) as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        assert wait_for(client, headers, gid, {"failed", "succeeded"})["status"] == "succeeded"
        assert len(fake.creates) == 2


def test_bad_token_fails_plainly(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """A token Replicate refuses (401) fails the generation with words, not a status code."""
    with live_app(tmp_path, db_url, fake, replicate_api_token="r8_wrong") as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        done = wait_for(client, headers, gid, {"failed", "succeeded"})
        assert done["error"] == (
            "The picture could not be started. Replicate refused our API token: "
            "You did not pass a valid authentication token"
        )


def test_too_slow_generation_is_stopped(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Past generation_timeout_s the prediction is cancelled upstream and the generation fails."""
    fake.plan(processing_s=60)
    with live_app(tmp_path, db_url, fake, generation_timeout_s=1.0) as (_live, client):
        headers, _ = login(client, "kim")
        gid = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}).json()[
            "id"
        ]
        done = wait_for(client, headers, gid, {"failed", "succeeded"})
        assert done["error"] == "The picture took too long and was stopped"
        assert [p.status() for p in fake.predictions.values()] == ["canceled"]


def test_forbidden_output_address_fails_the_generation(
    tmp_path: Path, db_url: str, fake: FakeReplicate
) -> None:
    """Loopback outputs off: outputs at the metadata service, localhost, http, or via redirects fail."""
    outputs = {
        "https://169.254.169.254/latest/meta-data/iam": "not on the allowed list",
        "https://localhost/out.webp": "not on the allowed list",
        "http://replicate.delivery/out.webp": "only https",
        f"{fake.url}/redirect?to=https://169.254.169.254/": "only https",
    }
    for url in outputs:
        fake.plan(output=[url])
    with live_app(tmp_path, db_url, fake, replicate_allow_loopback_outputs=False) as (_live, client):
        headers, _ = login(client, "kim")
        for words in outputs.values():
            gid = client.post(
                "/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"}
            ).json()["id"]
            done = wait_for(client, headers, gid, {"failed", "succeeded"})
            assert done["status"] == "failed", done
            assert (
                done["error"].startswith("The finished picture could not be kept: ")
                and words in done["error"]
            )
        assert client.get("/v1/photos", headers=headers).json()["items"] == []
        assert fake.file_requests == []


def test_missing_token_is_a_clear_503(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Without a Replicate token the API says what is missing."""
    with live_app(tmp_path, db_url, fake, replicate_api_token=None) as (_live, client):
        headers, _ = login(client, "kim")
        r = client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": "p"})
        assert r.status_code == 503 and "SILVERTALK_REPLICATE_API_TOKEN" in r.json()["detail"]


def test_list_pages_newest_first(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """The list pages with next_cursor, newest first."""
    with live_app(tmp_path, db_url, fake) as (_live, client):
        headers, _ = login(client, "kim")
        ids = [
            client.post("/v1/generations", headers=headers, json={"kind": "image", "prompt": f"p{i}"}).json()[
                "id"
            ]
            for i in range(3)
        ]
        first = client.get("/v1/generations", headers=headers, params={"limit": 2}).json()
        assert [g["id"] for g in first["items"]] == ids[::-1][:2] and first["next_cursor"]
        rest = client.get(
            "/v1/generations", headers=headers, params={"limit": 2, "cursor": first["next_cursor"]}
        )
        assert [g["id"] for g in rest.json()["items"]] == ids[:1] and rest.json()["next_cursor"] is None


def test_resume_after_restart(tmp_path: Path, db_url: str, fake: FakeReplicate) -> None:
    """Generations in flight and queued when the app stops are completed by the next app on the same DB."""
    fake.plan(processing_s=2.0)
    fake.plan(processing_s=0.3)
    fake.deliver_webhooks = False  # no public URL either: only the poller can finish them
    opts: dict[str, Any] = {"public": False, "generation_max_concurrent": 1}
    with live_app(tmp_path, db_url, fake, **opts) as (_live, client):
        headers, _ = login(client, "kim")
        first = client.post(
            "/v1/generations", headers=headers, json={"kind": "image", "prompt": "one"}
        ).json()["id"]
        second = client.post(
            "/v1/generations", headers=headers, json={"kind": "image", "prompt": "two"}
        ).json()["id"]
        wait_for(client, headers, first, {"running"})
        time.sleep(0.3)
        assert client.get(f"/v1/generations/{second}", headers=headers).json()["status"] == "queued"
    assert len(fake.predictions) == 1  # the cap held the second back
    with live_app(tmp_path, db_url, fake, **opts) as (_live, client):
        headers, _ = login(client, "kim")
        for gid in (first, second):
            assert wait_for(client, headers, gid, {"succeeded", "failed"})["status"] == "succeeded"
    assert len(fake.predictions) == 2  # the first was followed, not created again
    assert all(c.get("webhook") is None for c in fake.creates)


def test_running_generation_from_before_the_upgrade_is_followed(
    tmp_path: Path, db_url: str, fake: FakeReplicate
) -> None:
    """A row left running by the old in-process worker (no next check planned) is finished by the sweep."""
    from storage.models import Generation

    fake.deliver_webhooks = False
    prediction = fake.create("black-forest-labs/flux-schnell", {"input": {"prompt": "old"}})

    async def insert(user_id: uuid.UUID) -> uuid.UUID:
        engine = db.create_engine(db_url)
        try:
            async with db.session_factory(engine)() as s:
                gen = Generation(
                    user_id=user_id, kind="image", prompt="old", status="running", prediction_id=prediction.id
                )
                s.add(gen)
                await s.commit()
                return gen.id
        finally:
            await engine.dispose()

    with live_app(tmp_path, db_url, fake, public=False) as (_live, client):
        headers, user_id = login(client, "kim")
        gid = asyncio.run(insert(user_id))
        done = wait_for(client, headers, str(gid), {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
    assert len(fake.creates) == 0
