"""What a call is told about the caller (`load_user_facts`), on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.realtime.store import load_user_facts
from storage.models import User
from tests.conftest import dev_login
from tests.server.test_conversations import user_id
from tests.server.test_home import at, event


def facts_of(client: TestClient, auth: dict[str, str]) -> dict[str, object]:
    services = client.app.state.services  # type: ignore[attr-defined]

    async def load() -> dict[str, object]:
        async with services.sessions() as s:
            user = await s.get(User, user_id(client, auth))
        assert user is not None
        return await load_user_facts(services.sessions, user)

    assert client.portal is not None
    return client.portal.call(load)


def test_daily_reminder_from_last_week_is_in_todays_facts(client: TestClient) -> None:
    """A daily medicine reminder created a week ago, and a one-off today, are both today's events."""
    auth = dev_login(client, "kim")
    event(client, auth, "혈압약", at(-7, 8), rrule="FREQ=DAILY")
    event(client, auth, "병원", at(0, 10))
    event(client, auth, "어제 일", at(-1, 15))
    event(client, auth, "내일 일", at(1, 9))
    facts = facts_of(client, auth)
    assert facts["today_events"] == [{"title": "혈압약", "time": "08:00"}, {"title": "병원", "time": "10:00"}]


def test_facts_are_in_the_callers_own_zone(client: TestClient) -> None:
    """A weekly event set in New York is expanded and timed in New York, not in Seoul."""
    auth = dev_login(client, "amy")
    r = client.patch("/v1/users/me", headers=auth, json={"time_zone": "America/New_York"})
    assert r.status_code == 200, r.text
    event(client, auth, "Choir", at(-7, 19, "America/New_York"), rrule="FREQ=DAILY;INTERVAL=7")
    facts = facts_of(client, auth)
    assert facts["today_events"] == [{"title": "Choir", "time": "19:00"}]
