"""Home screen API on SQLite and PostgreSQL: one request with the day, memories, photos and last call."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from tests import images
from tests.conftest import dev_login
from tests.server.test_conversations import call, insert, user_id


def at(day_offset: int, hour: int, zone: str = "Asia/Seoul") -> str:
    """An ISO time `day_offset` days from today at `hour`, in `zone`, with its offset."""
    tz = ZoneInfo(zone)
    day = datetime.now(tz).date() + timedelta(days=day_offset)
    return datetime.combine(day, time(hour), tzinfo=tz).isoformat()


def event(client: TestClient, auth: dict[str, str], title: str, starts_at: str, **fields: Any) -> None:
    r = client.post("/v1/events", headers=auth, json={"title": title, "starts_at": starts_at} | fields)
    assert r.status_code == 201, r.text


def test_empty_home(client: TestClient, auth: dict[str, str]) -> None:
    """A new user's home has their profile, empty lists and no last conversation."""
    r = client.get("/v1/home", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["display_name"] == "kim" and body["user"]["time_zone"] == "Asia/Seoul"
    assert body["today"] == [] and body["tomorrow"] == []
    assert body["memories"] == [] and body["photos"] == []
    assert body["last_conversation"] is None
    assert client.get("/v1/home").status_code == 401


def test_home_shows_the_day_recent_items_and_last_summary(client: TestClient, auth: dict[str, str]) -> None:
    """Today/tomorrow in Asia/Seoul with a recurring event expanded, 5 memories, 8 photos, last summary."""
    event(client, auth, "혈압약", at(-7, 8), rrule="FREQ=DAILY")
    event(client, auth, "병원", at(0, 10), ends_at=at(0, 11))
    event(client, auth, "딸 방문", at(1, 18))
    event(client, auth, "어제 일", at(-1, 15))
    event(client, auth, "모레 일", at(2, 9))
    photos = [images.upload_photo(client, auth, images.png(30 + i, 30))["id"] for i in range(10)]
    memories = []
    for i in range(7):
        r = client.post("/v1/memories", headers=auth, json={"title": f"추억 {i}", "photo_ids": [photos[i]]})
        memories.append(r.json()["id"])
    me = user_id(client, auth)
    now = datetime.now(UTC)
    insert(
        client,
        *call(me, now - timedelta(days=2), "옛날 이야기", turns=2),
        *call(me, now - timedelta(days=1), "시장 다녀온 이야기", turns=4),
        *call(me, now - timedelta(hours=1), None, turns=1),  # still being summarised
    )

    body = client.get("/v1/home", headers=auth).json()
    assert [(o["title"], o["starts_at"]) for o in body["today"]] == [
        ("혈압약", at(0, 8)),
        ("병원", at(0, 10)),
    ]
    assert [(o["title"], o["starts_at"]) for o in body["tomorrow"]] == [
        ("혈압약", at(1, 8)),
        ("딸 방문", at(1, 18)),
    ]
    assert body["today"][0]["recurring"] is True and body["today"][1]["ends_at"] == at(0, 11)
    assert [m["id"] for m in body["memories"]] == list(reversed(memories))[:5]
    assert body["memories"][0]["photos"][0]["id"] == photos[6]
    assert [p["id"] for p in body["photos"]] == list(reversed(photos))[:8]
    last = body["last_conversation"]
    assert last["summary"] == "시장 다녀온 이야기" and last["turn_count"] == 4

    other = client.get("/v1/home", headers=dev_login(client, "lee")).json()
    assert other["today"] == [] and other["photos"] == [] and other["last_conversation"] is None


def test_home_days_follow_the_users_time_zone(client: TestClient, auth: dict[str, str]) -> None:
    """After moving to America/New_York, "today" is New York's day, shown in New York time."""
    assert (
        client.patch("/v1/users/me", headers=auth, json={"time_zone": "America/New_York"}).status_code == 200
    )
    event(client, auth, "lunch", at(0, 12, "America/New_York"))
    event(client, auth, "breakfast tomorrow", at(1, 7, "America/New_York"))
    body = client.get("/v1/home", headers=auth).json()
    assert [(o["title"], o["starts_at"]) for o in body["today"]] == [("lunch", at(0, 12, "America/New_York"))]
    assert [o["title"] for o in body["tomorrow"]] == ["breakfast tomorrow"]
