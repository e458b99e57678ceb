"""Calendar API on SQLite and PostgreSQL: events, RRULE validation and expansion over ranges."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import dev_login

MONDAY = "2026-03-02T09:00:00+09:00"  # Asia/Seoul has no DST: a plain week to expand over


def create(client: TestClient, auth: dict[str, str], **fields: Any) -> Any:
    body = {"title": "병원 예약", "starts_at": MONDAY} | fields
    r = client.post("/v1/events", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def occurrences(client: TestClient, auth: dict[str, str], start: str, end: str) -> Any:
    r = client.get("/v1/events", headers=auth, params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    return r.json()


def test_event_lifecycle(client: TestClient, auth: dict[str, str]) -> None:
    """Create, read, update and delete an event; times come back in the offset they were written in."""
    event = create(
        client, auth, ends_at="2026-03-02T10:30:00+09:00", remind_minutes_before=60, notes="진료카드 챙기기"
    )
    assert event["starts_at"] == "2026-03-02T09:00:00+09:00"
    assert event["ends_at"] == "2026-03-02T10:30:00+09:00"
    assert event["rrule"] is None and event["all_day"] is False and event["remind_minutes_before"] == 60
    url = f"/v1/events/{event['id']}"
    assert client.get(url, headers=auth).json() == event
    r = client.patch(url, headers=auth, json={"title": "치과", "notes": None})
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "치과" and r.json()["notes"] is None
    assert r.json()["starts_at"] == event["starts_at"]
    r = client.patch(
        url, headers=auth, json={"starts_at": "2026-03-03T01:00:00Z", "ends_at": "2026-03-03T02:00:00Z"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["starts_at"] == "2026-03-03T01:00:00Z"
    assert client.delete(url, headers=auth).status_code == 204
    assert client.get(url, headers=auth).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "starts_at": "2026-03-02T09:00:00"},
        {"title": "x", "starts_at": MONDAY, "ends_at": "2026-03-02T10:00:00"},
        {"title": "x", "starts_at": MONDAY, "ends_at": "2026-03-02T08:00:00+09:00"},
        {"title": "", "starts_at": MONDAY},
        {"starts_at": MONDAY},
        {"title": "x", "starts_at": "next tuesday"},
        {"title": "x", "starts_at": MONDAY, "remind_minutes_before": -5},
    ],
    ids=[
        "naive-start",
        "naive-end",
        "ends-before-start",
        "empty-title",
        "no-title",
        "not-a-time",
        "negative-remind",
    ],
)
def test_bad_events_are_refused(client: TestClient, auth: dict[str, str], body: dict[str, Any]) -> None:
    """Naive times, an end before the start and missing fields answer 422."""
    assert client.post("/v1/events", headers=auth, json=body).status_code == 422


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=SOMETIMES",
        "FREQ=MINUTELY",
        "BYDAY=MO",
        "FREQ=WEEKLY;BYDAY=XX",
        "FREQ=WEEKLY;BYDAY=MO;BYDAY=TU",
        "FREQ=DAILY;COUNT=3;UNTIL=20260401",
        "FREQ=DAILY;UNTIL=20200101",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY\nEXDATE:20260303T000000Z",
        "FREQ=WEEKLY;INTERVAL=0",
        "FREQ=DAILY;X-NAME=1",
        "hello",
    ],
)
def test_invalid_rrules_are_refused(client: TestClient, auth: dict[str, str], rule: str) -> None:
    """Rules dateutil cannot parse, unsupported frequencies and rules that never occur answer 422."""
    r = client.post("/v1/events", headers=auth, json={"title": "x", "starts_at": MONDAY, "rrule": rule})
    assert r.status_code == 422, r.text
    assert client.get("/v1/events", headers=auth).json()["items"] == []


def test_rrule_is_stored_canonical(client: TestClient, auth: dict[str, str]) -> None:
    """An "RRULE:" prefix and lower case are accepted; a date UNTIL means the end of that local day."""
    event = create(client, auth, rrule="RRULE:freq=weekly;byday=mo,we;until=20260331")
    assert event["rrule"] == "FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20260331T145959Z"


def test_a_seoul_week_expands_recurring_and_one_off_events(client: TestClient, auth: dict[str, str]) -> None:
    """Over one Asia/Seoul week: weekly MO/WE/FR 09:00, a 10-day pill course, a one-off, an ended series."""
    weekly = create(
        client, auth, title="노인정", rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR", ends_at="2026-03-02T11:00:00+09:00"
    )
    pills = create(
        client, auth, title="혈압약", starts_at="2026-03-05T08:00:00+09:00", rrule="FREQ=DAILY;COUNT=10"
    )
    once = create(client, auth, title="딸 방문", starts_at="2026-03-12T18:30:00+09:00")
    create(client, auth, title="지난 수업", rrule="FREQ=DAILY;UNTIL=20260306")
    create(client, auth, title="다음 주", starts_at="2026-03-16T09:00:00+09:00")

    body = occurrences(client, auth, "2026-03-09T00:00:00+09:00", "2026-03-16T00:00:00+09:00")
    got = [(o["title"], o["starts_at"]) for o in body["items"]]
    expected = [("노인정", f"2026-03-{d:02d}T09:00:00+09:00") for d in (9, 11, 13)]
    expected += [("혈압약", f"2026-03-{d:02d}T08:00:00+09:00") for d in range(9, 15)]  # 5th..14th
    expected += [("딸 방문", "2026-03-12T18:30:00+09:00")]
    assert sorted(got, key=lambda t: t[1]) == sorted(expected, key=lambda t: t[1])
    assert [o["starts_at"] for o in body["items"]] == sorted(o["starts_at"] for o in body["items"])
    assert body["truncated"] is False
    first = next(o for o in body["items"] if o["event_id"] == weekly["id"])
    assert first["ends_at"] == "2026-03-09T11:00:00+09:00" and first["recurring"] is True
    assert next(o for o in body["items"] if o["event_id"] == once["id"])["recurring"] is False
    assert sum(o["event_id"] == pills["id"] for o in body["items"]) == 6
    # The same instant written in UTC selects the same occurrences.
    same = occurrences(client, auth, "2026-03-08T15:00:00Z", "2026-03-15T15:00:00Z")
    assert same["items"] == body["items"]
    # A "+" left unencoded in the URL (it decodes to a space) still means the offset.
    raw = client.get("/v1/events?start=2026-03-09T00:00:00+09:00&end=2026-03-16T00:00:00+09:00", headers=auth)
    assert raw.status_code == 200 and raw.json()["items"] == body["items"]


def test_occurrences_overlapping_the_range_start_are_included(
    client: TestClient, auth: dict[str, str]
) -> None:
    """An event still going at the range start counts; one that ended exactly at it does not."""
    create(
        client, auth, title="밤샘", starts_at="2026-03-01T23:00:00+09:00", ends_at="2026-03-02T01:00:00+09:00"
    )
    create(
        client, auth, title="끝남", starts_at="2026-03-01T22:00:00+09:00", ends_at="2026-03-02T00:00:00+09:00"
    )
    body = occurrences(client, auth, "2026-03-02T00:00:00+09:00", "2026-03-03T00:00:00+09:00")
    assert [o["title"] for o in body["items"]] == ["밤샘"]


def test_expansion_is_capped(client: TestClient, auth: dict[str, str]) -> None:
    """A rule with 24 occurrences a day over 60 days is cut at 1000 occurrences and says so."""
    hours = ",".join(str(h) for h in range(24))
    create(client, auth, title="매시간", rrule=f"FREQ=DAILY;BYHOUR={hours}")
    body = occurrences(client, auth, "2026-03-02T00:00:00+09:00", "2026-05-01T00:00:00+09:00")
    assert len(body["items"]) == 1000 and body["truncated"] is True


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-03-02T00:00:00+09:00"},
        {"start": "2026-03-02T00:00:00", "end": "2026-03-03T00:00:00"},
        {"start": "2026-03-03T00:00:00+09:00", "end": "2026-03-02T00:00:00+09:00"},
        {"start": "2026-03-02T00:00:00+09:00", "end": "2028-03-02T00:00:00+09:00"},
    ],
    ids=["start-only", "naive", "backwards", "over-400-days"],
)
def test_bad_ranges_are_refused(client: TestClient, auth: dict[str, str], params: dict[str, str]) -> None:
    """A range needs both ends, with offsets, forwards, at most 400 days."""
    assert client.get("/v1/events", headers=auth, params=params).status_code == 422


def test_list_without_range_pages_by_start_time(client: TestClient, auth: dict[str, str]) -> None:
    """Without start/end the events come in start order, a page at a time."""
    days = [5, 1, 4, 2, 3]
    for d in days:
        create(client, auth, title=f"day {d}", starts_at=f"2026-04-{d:02d}T10:00:00+09:00")
    first = client.get("/v1/events", headers=auth, params={"limit": 3}).json()
    rest = client.get("/v1/events", headers=auth, params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [e["title"] for e in first["items"] + rest["items"]] == [f"day {d}" for d in sorted(days)]
    assert rest["next_cursor"] is None


def test_patch_revalidates_the_rule(client: TestClient, auth: dict[str, str]) -> None:
    """A bad rule or end in a PATCH answers 422 and changes nothing; rrule null makes it one-off."""
    event = create(client, auth, rrule="FREQ=WEEKLY")
    url = f"/v1/events/{event['id']}"
    assert client.patch(url, headers=auth, json={"rrule": "FREQ=NEVER"}).status_code == 422
    assert client.patch(url, headers=auth, json={"ends_at": "2026-03-01T00:00:00+09:00"}).status_code == 422
    assert client.patch(url, headers=auth, json={"title": None}).status_code == 422
    assert client.get(url, headers=auth).json() == event
    assert client.patch(url, headers=auth, json={"rrule": None}).json()["rrule"] is None
    body = occurrences(client, auth, "2026-03-01T00:00:00+09:00", "2026-04-01T00:00:00+09:00")
    assert len(body["items"]) == 1


def test_dst_zone_keeps_the_wall_clock(client: TestClient, auth: dict[str, str]) -> None:
    """For a New York user a weekly 09:00 event stays 09:00 local across the March DST change."""
    assert (
        client.patch("/v1/users/me", headers=auth, json={"time_zone": "America/New_York"}).status_code == 200
    )
    create(client, auth, title="church", starts_at="2026-03-01T09:00:00-05:00", rrule="FREQ=WEEKLY;COUNT=3")
    body = occurrences(client, auth, "2026-03-01T00:00:00-05:00", "2026-03-20T00:00:00-04:00")
    assert [o["starts_at"] for o in body["items"]] == [
        "2026-03-01T09:00:00-05:00",
        "2026-03-08T09:00:00-04:00",
        "2026-03-15T09:00:00-04:00",
    ]


def test_other_users_events_are_not_found(client: TestClient, auth: dict[str, str]) -> None:
    """Another user's event id answers 404 everywhere and never shows in their lists or ranges."""
    event = create(client, auth, rrule="FREQ=DAILY")
    url = f"/v1/events/{event['id']}"
    other = dev_login(client, "lee")
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, headers=other, json={"title": "mine"}).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get("/v1/events", headers=other).json()["items"] == []
    assert occurrences(client, other, "2026-03-01T00:00:00+09:00", "2026-03-08T00:00:00+09:00")["items"] == []
    assert client.get("/v1/events/12345", headers=auth).status_code == 404
    assert client.get("/v1/events").status_code == 401
    assert client.get(url, headers=auth).status_code == 200
