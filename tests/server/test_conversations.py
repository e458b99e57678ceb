"""Conversation history API on SQLite and PostgreSQL, over rows written as the realtime gateway does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from server.security import decode_access_token
from storage.models import Conversation, Turn
from tests.conftest import dev_login

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def user_id(client: TestClient, auth: dict[str, str]) -> uuid.UUID:
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    return decode_access_token(settings, auth["Authorization"].split()[1])


def insert(client: TestClient, *rows: Any) -> None:
    """Write rows straight into the app's database, as the realtime gateway would."""
    services = client.app.state.services  # type: ignore[attr-defined]

    async def write() -> None:
        async with services.sessions() as session:
            for row in rows:
                session.add(row)
                await session.flush()
            await session.commit()

    assert client.portal is not None
    client.portal.call(write)


def call(owner: uuid.UUID, started: datetime, summary: str | None = None, turns: int = 0) -> list[Any]:
    conversation = Conversation(user_id=owner, started_at=started, ended_at=started + timedelta(minutes=5),
                                summary=summary)  # fmt: skip
    rows: list[Any] = [conversation]
    for i in range(turns):
        turn = Turn(
            conversation_id=conversation.id,
            item_id=f"item_{i:03d}",
            role="user" if i % 2 == 0 else "assistant",
            text=f"말 {i}",
            started_at=started + timedelta(seconds=10 * i),
            ended_at=started + timedelta(seconds=10 * i + 5),
            status="cancelled" if i == turns - 1 else "completed",
            timings={"stt_ms": 120.5, "llm_ms": 300.0},
        )
        rows.append(turn)
    return rows


def test_list_newest_first_with_turn_counts_and_cursor(client: TestClient, auth: dict[str, str]) -> None:
    """Conversations come newest first with their turn counts, a page at a time."""
    me = user_id(client, auth)
    insert(client, *call(me, T0, "산책 이야기", turns=3), *call(me, T0 + timedelta(days=1), turns=0),
           *call(me, T0 + timedelta(days=2), "손주 이야기", turns=2))  # fmt: skip
    first = client.get("/v1/conversations", headers=auth, params={"limit": 2}).json()
    assert [c["summary"] for c in first["items"]] == ["손주 이야기", None]
    assert [c["turn_count"] for c in first["items"]] == [2, 0]
    rest = client.get("/v1/conversations", headers=auth, params={"cursor": first["next_cursor"]}).json()
    assert [(c["summary"], c["turn_count"]) for c in rest["items"]] == [("산책 이야기", 3)]
    assert rest["next_cursor"] is None
    item = rest["items"][0]
    assert item["language"] == "ko"
    assert item["started_at"] == "2026-03-02T01:00:00Z" and item["ended_at"] == "2026-03-02T01:05:00Z"


def test_detail_has_turns_in_spoken_order(client: TestClient, auth: dict[str, str]) -> None:
    """One conversation answers with its turns: role, text, status, timestamps and timings."""
    rows = call(user_id(client, auth), T0, "요약", turns=4)
    insert(client, rows[0], *reversed(rows[1:]))  # written out of order on purpose
    r = client.get(f"/v1/conversations/{rows[0].id}", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["turn_count"] == 4 and body["summary"] == "요약"
    assert [t["item_id"] for t in body["turns"]] == ["item_000", "item_001", "item_002", "item_003"]
    assert [t["role"] for t in body["turns"]] == ["user", "assistant", "user", "assistant"]
    assert body["turns"][0]["text"] == "말 0" and body["turns"][0]["status"] == "completed"
    assert body["turns"][3]["status"] == "cancelled"
    assert body["turns"][1]["started_at"] == "2026-03-02T01:00:10Z"
    assert body["turns"][0]["timings"] == {"stt_ms": 120.5, "llm_ms": 300.0}


def test_other_users_conversations_are_not_found(client: TestClient, auth: dict[str, str]) -> None:
    """Another user's conversation id answers 404 and never shows in their list."""
    rows = call(user_id(client, auth), T0, "비밀", turns=1)
    insert(client, *rows)
    other = dev_login(client, "lee")
    assert client.get(f"/v1/conversations/{rows[0].id}", headers=other).status_code == 404
    assert client.get("/v1/conversations", headers=other).json() == {"items": [], "next_cursor": None}
    assert client.get(f"/v1/conversations/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.get("/v1/conversations/xyz", headers=auth).status_code == 404
    assert client.get("/v1/conversations").status_code == 401
    assert client.get(f"/v1/conversations/{rows[0].id}", headers=auth).status_code == 200
