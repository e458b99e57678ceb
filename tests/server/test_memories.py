"""Memories API on SQLite and PostgreSQL: stories with partial dates, people and the user's own photos."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import images
from tests.conftest import dev_login


def create(client: TestClient, auth: dict[str, str], **fields: Any) -> Any:
    r = client.post("/v1/memories", headers=auth, json={"title": "첫 월급"} | fields)
    assert r.status_code == 201, r.text
    return r.json()


def test_memory_lifecycle_with_photos_in_order(client: TestClient, auth: dict[str, str]) -> None:
    """Create with photos (order kept, repeats dropped), read, replace fields and photos, delete."""
    a, b, c = (images.upload_photo(client, auth, images.png(50 + i, 40)) for i in range(3))
    memory = create(
        client, auth, body="서울역 앞 다방에서", happened_on="1968-07", place="서울역",
        people=["영희", " 철수 ", "영희"], photo_ids=[b["id"], a["id"], b["id"]],
    )  # fmt: skip
    assert memory["happened_on"] == "1968-07" and memory["place"] == "서울역"
    assert memory["people"] == ["영희", "철수"] and memory["source"] == "manual"
    assert [p["id"] for p in memory["photos"]] == [b["id"], a["id"]]
    assert memory["photos"][0]["urls"]["thumb"] == f"/v1/photos/{b['id']}/file?size=thumb"
    url = f"/v1/memories/{memory['id']}"
    assert client.get(url, headers=auth).json() == memory

    r = client.patch(url, headers=auth, json={"happened_on": "1968", "photo_ids": [c["id"], a["id"]]})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["happened_on"] == "1968" and changed["title"] == "첫 월급"
    assert [p["id"] for p in changed["photos"]] == [c["id"], a["id"]]
    assert changed["updated_at"] > memory["updated_at"]
    assert client.patch(url, headers=auth, json={"place": None}).json()["place"] is None

    assert client.delete(url, headers=auth).status_code == 204
    assert client.get(url, headers=auth).status_code == 404
    # The photos stay in the gallery.
    assert len(client.get("/v1/photos", headers=auth).json()["items"]) == 3


def test_conversation_source_and_plain_year(client: TestClient, auth: dict[str, str]) -> None:
    """A memory from a call has source "conversation"; a year alone is a valid date."""
    memory = create(client, auth, happened_on="1950", source="conversation")
    assert memory["source"] == "conversation" and memory["photos"] == [] and memory["body"] == ""


@pytest.mark.parametrize(
    "fields",
    [
        {"happened_on": "68"},
        {"happened_on": "1968-13"},
        {"happened_on": "1968-02-30"},
        {"happened_on": "1968/07/14"},
        {"source": "dream"},
        {"title": ""},
        {"people": ["영희", "  "]},
        {"photo_ids": ["not-a-uuid"]},
    ],
    ids=[
        "short-year",
        "month-13",
        "feb-30",
        "slashes",
        "bad-source",
        "empty-title",
        "blank-person",
        "bad-id",
    ],
)
def test_bad_memories_are_refused(client: TestClient, auth: dict[str, str], fields: dict[str, Any]) -> None:
    """Malformed dates, unknown sources, empty titles and blank names answer 422."""
    r = client.post("/v1/memories", headers=auth, json={"title": "x"} | fields)
    assert r.status_code == 422, r.text


def test_only_own_photos_can_be_attached(client: TestClient, auth: dict[str, str]) -> None:
    """Another user's photo id or a missing one answers 422 and creates or changes nothing."""
    mine = images.upload_photo(client, auth)
    other = dev_login(client, "lee")
    theirs = images.upload_photo(client, other)
    missing = "00000000-0000-4000-8000-000000000000"
    for bad in (theirs["id"], missing):
        r = client.post("/v1/memories", headers=auth, json={"title": "x", "photo_ids": [mine["id"], bad]})
        assert r.status_code == 422 and bad in r.text
    assert client.get("/v1/memories", headers=auth).json()["items"] == []
    memory = create(client, auth, photo_ids=[mine["id"]])
    r = client.patch(f"/v1/memories/{memory['id']}", headers=auth, json={"photo_ids": [theirs["id"]]})
    assert r.status_code == 422
    assert [p["id"] for p in client.get(f"/v1/memories/{memory['id']}", headers=auth).json()["photos"]] == [
        mine["id"]
    ]


def test_deleting_a_photo_detaches_it(client: TestClient, auth: dict[str, str]) -> None:
    """A deleted photo disappears from the memories that showed it."""
    a, b = images.upload_photo(client, auth), images.upload_photo(client, auth)
    memory = create(client, auth, photo_ids=[a["id"], b["id"]])
    assert client.delete(f"/v1/photos/{a['id']}", headers=auth).status_code == 204
    got = client.get(f"/v1/memories/{memory['id']}", headers=auth).json()
    assert [p["id"] for p in got["photos"]] == [b["id"]]


def test_list_is_newest_first_with_a_cursor(client: TestClient, auth: dict[str, str]) -> None:
    """The list walks newest first in pages; a tampered cursor answers 422."""
    ids = [create(client, auth, title=f"m{i}")["id"] for i in range(4)]
    first = client.get("/v1/memories", headers=auth, params={"limit": 3}).json()
    rest = client.get(
        "/v1/memories", headers=auth, params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [m["id"] for m in first["items"] + rest["items"]] == list(reversed(ids))
    assert rest["next_cursor"] is None
    assert client.get("/v1/memories", headers=auth, params={"cursor": "eyJ4Ijox"}).status_code == 422


def test_other_users_memories_are_not_found(client: TestClient, auth: dict[str, str]) -> None:
    """Another user's memory id answers 404 for read, change and delete; lists stay separate."""
    memory = create(client, auth)
    url = f"/v1/memories/{memory['id']}"
    other = dev_login(client, "lee")
    assert client.get(url, headers=other).status_code == 404
    assert client.patch(url, headers=other, json={"title": "mine"}).status_code == 404
    assert client.delete(url, headers=other).status_code == 404
    assert client.get("/v1/memories", headers=other).json()["items"] == []
    assert client.get("/v1/memories/abc", headers=auth).status_code == 404
    assert client.post("/v1/memories", json={"title": "x"}).status_code == 401
    assert client.get(url, headers=auth).json()["title"] == "첫 월급"
