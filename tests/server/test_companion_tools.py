"""The companion's tools over the caller's own rows, on SQLite and PostgreSQL.

Each test drives `CompanionTools.run` the way the conversation core does (name and argument dict
in, result dict out) inside the running app, and checks the effect through the REST API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.companion.tools import CompanionTools
from storage.models import User
from tests import images
from tests.conftest import dev_login, make_settings
from tests.fakes.replicate import FakeReplicate
from tests.server.test_conversations import user_id

Run = Callable[..., dict[str, Any]]
SEOUL = ZoneInfo("Asia/Seoul")


def tools_for(
    client: TestClient, auth: dict[str, str], language: str = "ko", pushed: list[dict[str, Any]] | None = None
) -> Run:
    """`run(name, **arguments)` for the caller behind `auth`, as a call would run it."""
    services = client.app.state.services  # type: ignore[attr-defined]
    uid = user_id(client, auth)

    async def push(event: dict[str, Any]) -> None:
        assert pushed is not None
        pushed.append(event)

    async def run(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        async with services.sessions() as s:
            user = await s.get(User, uid)
        assert user is not None
        runner = CompanionTools(services, user, language=language, push=push if pushed is not None else None)
        return await runner.run(name, arguments)

    assert client.portal is not None
    portal = client.portal
    return lambda name, **arguments: portal.call(run, name, arguments)


def memory(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post("/v1/memories", headers=auth, json=fields)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def tomorrow_at(hour: int) -> datetime:
    return datetime.combine(datetime.now(SEOUL).date() + timedelta(days=1), datetime.min.time()).replace(
        hour=hour
    )


def test_add_event_asks_first_then_saves_a_daily_reminder(client: TestClient, auth: dict[str, str]) -> None:
    """Unconfirmed, add_event only asks; confirmed, the daily reminder is stored and listed every day."""
    run = tools_for(client, auth)
    start = tomorrow_at(9).strftime("%Y-%m-%dT%H:%M")
    asked = run(
        "add_event", title="혈압약 드시기", start=start, repeat="FREQ=DAILY", remind_minutes_before=10
    )
    assert asked["ok"] is False and asked["needs_confirmation"] is True
    assert "혈압약 드시기" in asked["ask"] and "9시" in asked["ask"] and asked["ask"].endswith("?")
    assert client.get("/v1/events", headers=auth).json()["items"] == []

    saved = run(
        "add_event",
        title="혈압약 드시기",
        start=start,
        repeat="FREQ=DAILY",
        remind_minutes_before=10,
        confirmed=True,
    )
    assert saved["ok"] is True and saved["repeat"] == "FREQ=DAILY" and saved["start"].endswith("09:00+09:00")
    [stored] = client.get("/v1/events", headers=auth).json()["items"]
    assert stored["rrule"] == "FREQ=DAILY" and stored["starts_at"].endswith("09:00:00+09:00")

    day = tomorrow_at(0).date()
    listed = run("list_events", date=day.isoformat(), end_date=(day + timedelta(days=2)).isoformat())
    assert [(e["date"], e["time"], e.get("repeats")) for e in listed["events"]] == [
        ((day + timedelta(days=i)).isoformat(), "09:00", True) for i in range(3)
    ]
    assert run("list_events")["events"] == []  # today: it starts tomorrow


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("dance", {}, "there is no tool 'dance'"),
        ("add_event", {"title": "치과", "start": "next friday"}, "start"),
        ("add_event", {"title": "", "start": "2030-01-01T10:00"}, "title"),
        ("add_event", {"title": "치과", "start": "2030-01-01T10:00", "repeat": "FREQ=HOURLY"}, "repeat"),
        ("add_event", {"title": "치과", "start": "2030-01-01T10:00", "end": "2030-01-01T09:00"}, "end must"),
        ("add_event", {"title": "치과", "start": "2001-01-01T10:00", "confirmed": True}, "already passed"),
        ("list_events", {"date": "2030-01-01", "end_date": "2030-03-01"}, "end_date"),
        ("find_memories", {}, "give words"),
        ("find_memories", {"era": "the war"}, "era"),
        ("save_memory", {"title": "x", "happened_on": "1968/07"}, "happened_on"),
        ("show_photo", {"photo_id": "not-a-uuid"}, "photo_id"),
    ],
)
def test_bad_calls_get_an_error_to_recover_from(
    client: TestClient, auth: dict[str, str], name: str, arguments: dict[str, Any], says: str
) -> None:
    """A wrong call answers ok: false with words naming what is wrong, and stores nothing."""
    result = tools_for(client, auth)(name, **arguments)
    assert result["ok"] is False and says in result["error"], result
    assert client.get("/v1/events", headers=auth).json()["items"] == []
    assert client.get("/v1/memories", headers=auth).json()["items"] == []


def test_find_memories_by_a_persons_name_ranked_by_relevance(
    client: TestClient, auth: dict[str, str]
) -> None:
    """A name finds the memory about that person first (particles and all), an era filters, and
    another user's memories never appear."""
    first = memory(
        client, auth, title="첫 월급", body="영희랑 서울역 앞 다방에서 커피를 마셨어요.",
        people=["영희"], place="서울역", happened_on="1968-07",
    )  # fmt: skip
    memory(
        client, auth, title="결혼식", body="철수와 부산에서 결혼했어요. 영희도 왔어요.", happened_on="1972"
    )
    memory(client, auth, title="Summer by the sea", body="Mary and I swam at Haeundae.", people=["Mary"])
    other = dev_login(client, "lee")
    memory(client, other, title="영희 생일", body="영희 영희 영희", people=["영희"])
    run = tools_for(client, auth)

    by_person = run("find_memories", people=["영희"])["memories"]
    assert [m["title"] for m in by_person] == ["첫 월급", "결혼식"]
    assert by_person[0]["memory_id"] == first["id"] and by_person[0]["people"] == ["영희"]
    assert run("find_memories", words="영희가 서울역에서")["memories"][0]["title"] == "첫 월급"
    assert [m["title"] for m in run("find_memories", words="sea with Mary")["memories"]] == [
        "Summer by the sea"
    ]
    assert [m["title"] for m in run("find_memories", era="1970년대")["memories"]] == ["결혼식"]
    assert [m["title"] for m in run("find_memories", people=["영희"], era="1960s")["memories"]] == ["첫 월급"]
    nothing = run("find_memories", words="우주여행")
    assert nothing["ok"] is True and nothing["memories"] == [] and "honestly" in nothing["note"]


def test_save_memory_confirms_and_is_an_ordinary_memory(client: TestClient, auth: dict[str, str]) -> None:
    """A saved memory comes from a conversation, can be edited and deleted; the same title twice is one."""
    run = tools_for(client, auth, language="en")
    story = {
        "title": "First bicycle",
        "body": "Dad bought it in Daegu.",
        "people": ["Dad"],
        "happened_on": "1955",
    }
    assert run("save_memory", **story)["ask"] == "Shall I save 'First bicycle' as one of your memories?"
    saved = run("save_memory", **story, confirmed=True)
    assert saved["ok"] is True and saved["saved"] is True
    again = run("save_memory", **(story | {"title": "first  bicycle!"}), confirmed=True)
    assert again["already_saved"] is True and again["memory_id"] == saved["memory_id"]
    [listed] = client.get("/v1/memories", headers=auth).json()["items"]
    assert (
        listed["source"] == "conversation" and listed["people"] == ["Dad"] and listed["happened_on"] == "1955"
    )
    url = f"/v1/memories/{saved['memory_id']}"
    assert client.patch(url, headers=auth, json={"place": "Daegu"}).json()["place"] == "Daegu"
    assert client.delete(url, headers=auth).status_code == 204


def test_show_photo_pushes_the_photo_event(client: TestClient, auth: dict[str, str]) -> None:
    """show_photo finds the memory's first photo, pushes silvertalk.photo.show with its URLs, and
    refuses another user's photo and a memory without photos."""
    photo = images.upload_photo(client, auth, caption="서울역에서")
    memory(client, auth, title="첫 월급", body="서울역 다방", photo_ids=[photo["id"]])
    memory(client, auth, title="고향 집")
    pushed: list[dict[str, Any]] = []
    run = tools_for(client, auth, pushed=pushed)

    shown = run("show_photo", words="첫 월급")
    assert shown["ok"] is True and shown["shown"] is True and shown["photo_id"] == photo["id"]
    [event] = pushed
    assert event["type"] == "silvertalk.photo.show" and event["memory"]["title"] == "첫 월급"
    assert event["photo"]["urls"] == photo["urls"] and event["photo"]["caption"] == "서울역에서"
    assert client.get(event["photo"]["urls"]["medium"], headers=auth).status_code == 200

    assert "no photo" in run("show_photo", words="고향 집")["error"]
    stranger = images.upload_photo(client, dev_login(client, "lee"))
    assert run("show_photo", photo_id=stranger["id"])["ok"] is False
    assert len(pushed) == 1


def test_make_picture_without_replicate_says_so(client: TestClient, auth: dict[str, str]) -> None:
    """Without Replicate the confirmed call answers why no picture can be made, and starts nothing."""
    memory(client, auth, title="첫 월급")
    run = tools_for(client, auth)
    assert "그림" in run("make_picture", words="첫 월급")["ask"]
    refused = run("make_picture", words="첫 월급", confirmed=True)
    assert refused["ok"] is False and "not set up" in refused["error"]
    assert client.get("/v1/generations", headers=auth).json()["items"] == []


def test_make_picture_starts_a_generation(tmp_path: Path, db_url: str) -> None:
    """Confirmed, make_picture queues a picture from the memory that the worker carries to the gallery."""
    with FakeReplicate() as fake:
        settings = make_settings(
            tmp_path, db_url, replicate_api_token=fake.token, replicate_base_url=fake.url,
            replicate_allow_loopback_outputs=True, replicate_prefer_wait_s=0,
            generation_poll_interval_s=0.2, generation_poll_max_interval_s=0.5,
        )  # fmt: skip
        with TestClient(create_app(settings)) as client:
            auth = dev_login(client, "kim")
            mem = memory(client, auth, title="첫 월급", body="서울역 다방에서", happened_on="1968")
            started = tools_for(client, auth)("make_picture", memory_id=mem["id"], confirmed=True)
            assert started["ok"] is True and started["memory_title"] == "첫 월급"
            url = f"/v1/generations/{started['generation_id']}"
            deadline = time.monotonic() + 30
            while (gen := client.get(url, headers=auth).json())["status"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, gen
                time.sleep(0.2)
            assert gen["status"] == "succeeded" and gen["memory_id"] == mem["id"]
            assert "1968" in gen["prompt"] or "첫 월급" in gen["prompt"]
