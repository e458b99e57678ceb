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


def _past_talk(
    client: TestClient,
    auth: dict[str, str],
    kind: str,
    days_ago: float,
    turns: list[tuple[str, str]],
    summary: str | None,
) -> None:
    """A finished conversation of `kind` (call or messages) `days_ago`, stored as the gateway and
    the voice-message worker store theirs."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from storage.models import Conversation, Turn

    services = client.app.state.services  # type: ignore[attr-defined]
    owner = user_id(client, auth)
    when = datetime.now(UTC) - timedelta(days=days_ago)

    async def store() -> None:
        async with services.sessions() as s:
            conv = Conversation(user_id=owner, kind=kind, started_at=when, ended_at=when, summary=summary)
            s.add(conv)
            await s.flush()
            for i, (role, text) in enumerate(turns):
                s.add(
                    Turn(
                        conversation_id=conv.id,
                        item_id=f"item_{uuid.uuid4().hex[:8]}",
                        role=role,
                        text=text,
                        started_at=when + timedelta(seconds=i),
                    )
                )
            await s.commit()

    assert client.portal is not None
    client.portal.call(store)


def test_the_last_calls_and_voice_messages_are_recalled(client: TestClient) -> None:
    """The next call knows what the last calls were about and what the caller said in a voice
    message, newest calls first; stale talk and other people's are left out."""
    auth = dev_login(client, "park")
    other = dev_login(client, "lee")
    _past_talk(client, auth, "call", 40, [("user", "오래된 이야기")], "40일 전 통화")
    _past_talk(client, auth, "call", 3, [("user", "치과 예약")], "내일 치과에 가신다고 하셨다.")
    _past_talk(client, auth, "call", 1, [("user", "손녀 이야기")], "손녀 민지가 대학에 합격했다.")
    _past_talk(client, auth, "call", 0.5, [("user", "여보세요")], None)  # no summary: nothing to recall
    _past_talk(client, other, "call", 1, [("user", "비밀")], "다른 사람의 통화")
    _past_talk(
        client,
        auth,
        "messages",
        0.2,
        [("user", "오늘 무릎이 좀 아파요"), ("assistant", "저런, 따뜻하게 찜질해 보세요.")],
        None,
    )
    facts = facts_of(client, auth)
    calls = facts["recent_calls"]
    assert isinstance(calls, list)
    assert [c["summary"] for c in calls] == ["손녀 민지가 대학에 합격했다.", "내일 치과에 가신다고 하셨다."]
    assert all(len(c["date"]) == 10 for c in calls)
    assert facts["recent_messages"] == [
        {"from": "caller", "text": "오늘 무릎이 좀 아파요"},
        {"from": "companion", "text": "저런, 따뜻하게 찜질해 보세요."},
    ]


def test_recalled_talk_reaches_the_instruction() -> None:
    """The summaries and messages are written into the call's instruction, labelled."""
    from pipeline.prompts import system_prompt

    prompt = system_prompt(
        "ko",
        "박순자",
        {
            "recent_calls": [{"date": "2026-11-26", "summary": "손녀 민지가 대학에 합격했다."}],
            "recent_messages": [{"from": "caller", "text": "오늘 무릎이 좀 아파요"}],
        },
    )
    assert "지난 통화 (날짜와 요약): date: 2026-11-26, summary: 손녀 민지가 대학에 합격했다." in prompt
    assert "from: caller, text: 오늘 무릎이 좀 아파요" in prompt
