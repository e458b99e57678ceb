"""`GET/PATCH /v1/users/me`: the profile, its validation, and that it is the caller's own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.conftest import dev_login


def test_new_user_has_korean_defaults(client: TestClient, auth: dict[str, str]) -> None:
    """A fresh user is Korean-speaking, in Asia/Seoul, at normal speech rate, named as logged in."""
    r = client.get("/v1/users/me", headers=auth)
    assert r.status_code == 200
    me = r.json()
    assert set(me) == {
        "id",
        "display_name",
        "birth_year",
        "language",
        "speech_rate",
        "time_zone",
        "profile_image_url",
        "created_at",
    }
    assert (me["display_name"], me["language"], me["speech_rate"], me["time_zone"]) == (
        "kim",
        "ko",
        1.0,
        "Asia/Seoul",
    )
    assert me["birth_year"] is None and me["profile_image_url"] is None
    uuid.UUID(me["id"])
    created = datetime.fromisoformat(me["created_at"])
    assert created.tzinfo is not None and abs((datetime.now(UTC) - created).total_seconds()) < 120


def test_patch_changes_only_what_is_sent(client: TestClient, auth: dict[str, str]) -> None:
    """PATCH updates the fields given, keeps the rest, and the change is persisted."""
    r = client.patch(
        "/v1/users/me",
        headers=auth,
        json={"birth_year": 1948, "language": "en", "speech_rate": 0.8, "time_zone": "America/New_York"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "kim"
    r = client.patch("/v1/users/me", headers=auth, json={"display_name": "  김순자  "})
    assert r.json()["display_name"] == "김순자"
    me = client.get("/v1/users/me", headers=auth).json()
    assert (me["display_name"], me["birth_year"], me["language"], me["speech_rate"], me["time_zone"]) == (
        "김순자",
        1948,
        "en",
        0.8,
        "America/New_York",
    )
    assert client.patch("/v1/users/me", headers=auth, json={"birth_year": None}).json()["birth_year"] is None


def test_patch_refuses_invalid_values_and_changes_nothing(client: TestClient, auth: dict[str, str]) -> None:
    """Unknown language or time zone, out-of-range rate or year, blank or null name: 422, unchanged."""
    before = client.get("/v1/users/me", headers=auth).json()
    next_year = datetime.now(UTC).year + 1
    bad = [
        {"language": "fr"},
        {"language": "KO"},
        {"speech_rate": 0.49},
        {"speech_rate": 2.01},
        {"time_zone": "Mars/Olympus_Mons"},
        {"time_zone": "../../etc/passwd"},
        {"time_zone": "/usr/share/zoneinfo/UTC"},
        {"birth_year": 1899},
        {"birth_year": next_year},
        {"display_name": ""},
        {"display_name": "   "},
        {"display_name": "x" * 101},
        {"display_name": None},
        {"language": None},
        {"time_zone": None},
        {"speech_rate": "fast"},
    ]
    for body in bad:
        r = client.patch("/v1/users/me", headers=auth, json=body)
        assert r.status_code == 422, body
    assert client.get("/v1/users/me", headers=auth).json() == before


def test_patch_ignores_fields_the_user_may_not_set(client: TestClient, auth: dict[str, str]) -> None:
    """Sending id, kakao_id, dev_name or created_at changes none of them (no mass assignment)."""
    before = client.get("/v1/users/me", headers=auth).json()
    r = client.patch(
        "/v1/users/me",
        headers=auth,
        json={
            "id": str(uuid.uuid4()),
            "kakao_id": 1,
            "dev_name": "lee",
            "created_at": "2000-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 200
    assert r.json() == before
    # dev_name unchanged: logging in as "kim" still reaches this user, "lee" is someone new.
    assert client.post("/v1/auth/dev-login", json={"name": "kim"}).json()["user"]["id"] == before["id"]
    assert client.post("/v1/auth/dev-login", json={"name": "lee"}).json()["user"]["id"] != before["id"]


def test_each_user_sees_and_changes_only_their_own_profile(client: TestClient) -> None:
    """Two users: one's PATCH does not touch the other's profile."""
    kim, lee = dev_login(client, "kim"), dev_login(client, "lee")
    client.patch("/v1/users/me", headers=kim, json={"speech_rate": 1.5})
    assert client.get("/v1/users/me", headers=kim).json()["speech_rate"] == 1.5
    assert client.get("/v1/users/me", headers=lee).json()["speech_rate"] == 1.0
    assert client.get("/v1/users/me", headers=lee).json()["display_name"] == "lee"


def test_profile_needs_a_login(client: TestClient) -> None:
    """Without a bearer token both GET and PATCH answer 401."""
    assert client.get("/v1/users/me").status_code == 401
    assert client.patch("/v1/users/me", json={"language": "en"}).status_code == 401
