"""After a call: `summarize_conversation` over a stored conversation, with the fake Gemini and the
fake OpenAI-compatible server answering the JSON-shaped extraction prompt (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pipeline.engines.base import LanguageModel
from pipeline.engines.gemini import GeminiLLM
from pipeline.engines.offline import OfflineLLM
from pipeline.engines.openai_compat import OpenAICompatLLM
from server.companion.call import CallCompanion
from server.companion.summary import CallSummary, summarize_conversation
from storage.models import Conversation, Turn, User
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.openai_chat import FakeChat
from tests.server.test_conversations import insert, user_id

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
KO_CALL = [
    ("user", "안녕하세요. 오늘은 옛날 생각이 나네요."),
    ("assistant", "어떤 생각이 나셨어요?"),
    ("user", "1968년에 첫 월급 받고 영희랑 서울역 앞 다방에 갔었어요."),
    ("assistant", "정말 좋은 추억이네요."),
]
KO_ANSWER = {
    "summary": "첫 월급을 받고 영희 님과 서울역 다방에 간 이야기를 나눴어요.",
    "memories": [
        {"title": "첫 월급 날의 다방", "body": "첫 월급을 받고 영희와 서울역 앞 다방에 갔다.",
         "people": ["영희"], "place": "서울역", "happened_on": "1968"},
        {"title": "고향 집", "body": "이미 있는 추억", "people": []},
        {"title": "", "body": "제목 없는 항목은 버린다"},
    ],
}  # fmt: skip


def stored_call(
    client: TestClient, auth: dict[str, str], lines: list[tuple[str, str]], language: str
) -> uuid.UUID:
    conversation = Conversation(
        user_id=user_id(client, auth), language=language, started_at=T0, ended_at=T0 + timedelta(minutes=3),
        summary="(first words)",
    )  # fmt: skip
    turns = [
        Turn(conversation_id=conversation.id, item_id=f"item_{i}", role=role, text=text,
             started_at=T0 + timedelta(seconds=10 * i))
        for i, (role, text) in enumerate(lines)
    ]  # fmt: skip
    insert(client, conversation, *turns)
    return conversation.id


def summarize(client: TestClient, llm: LanguageModel | None, conversation_id: uuid.UUID) -> CallSummary:
    sessions = client.app.state.services.sessions  # type: ignore[attr-defined]
    assert client.portal is not None
    return client.portal.call(lambda: summarize_conversation(sessions, llm, conversation_id))


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(ttft_s=0.01) as fake:
        yield fake


def test_gemini_summary_and_new_memory(client: TestClient, auth: dict[str, str], gemini: FakeGemini) -> None:
    """The summary lands on the conversation and one new memory is saved from the call; an existing
    title and an invalid item are skipped; the memory is an ordinary, editable one."""
    assert client.post("/v1/memories", headers=auth, json={"title": "고향 집"}).status_code == 201
    conversation_id = stored_call(client, auth, KO_CALL, "ko")
    # The model may wrap its JSON in a fence: the fence is ignored.
    gemini.script(Reply(text="```json\n" + json.dumps(KO_ANSWER, ensure_ascii=False) + "\n```", chunks=4))
    llm = GeminiLLM(api_key=gemini.api_key, model="gemini-2.5-flash", base_url=gemini.url)
    result = summarize(client, llm, conversation_id)
    assert result.extracted and len(result.memory_ids) == 1 and result.duplicates == 1
    sent = gemini.requests[-1].body
    prompt = sent["contents"][0]["parts"][0]["text"]
    assert "영희랑 서울역" in prompt and "고향 집" in prompt and "tools" not in sent
    assert "JSON" in sent["systemInstruction"]["parts"][0]["text"]
    conv = client.get(f"/v1/conversations/{conversation_id}", headers=auth).json()
    assert conv["summary"] == KO_ANSWER["summary"]
    memories = client.get("/v1/memories", headers=auth).json()["items"]
    new = next(m for m in memories if m["id"] == str(result.memory_ids[0]))
    assert new["source"] == "conversation" and new["title"] == "첫 월급 날의 다방"
    assert new["people"] == ["영희"] and new["place"] == "서울역" and new["happened_on"] == "1968"

    # Summarising the same call again adds no duplicate; then the user edits and deletes it.
    gemini.script(Reply(text=json.dumps(KO_ANSWER, ensure_ascii=False)))
    again = summarize(client, llm, conversation_id)
    client.portal.call(llm.aclose)  # type: ignore[union-attr]
    assert again.extracted and again.memory_ids == [] and again.duplicates == 2
    assert len(client.get("/v1/memories", headers=auth).json()["items"]) == 2
    url = f"/v1/memories/{new['id']}"
    assert client.patch(url, headers=auth, json={"title": "첫 월급"}).json()["title"] == "첫 월급"
    assert client.delete(url, headers=auth).status_code == 204


def test_openai_compatible_summary_in_english(client: TestClient, auth: dict[str, str]) -> None:
    """The OpenAI-compatible engine answers the same prompt in English; a bad date drops only the date."""
    call = [("user", "My husband Tom and I married in Busan in 1970."), ("assistant", "How lovely!")]
    conversation_id = stored_call(client, auth, call, "en")
    answer: dict[str, Any] = {
        "summary": "They talked about marrying Tom in Busan.",
        "memories": [{"title": "Our wedding in Busan", "body": "Married Tom in Busan.", "people": ["Tom"],
                      "place": "Busan", "happened_on": "spring 1970"}],
    }  # fmt: skip
    with FakeChat(ttft_s=0.01, reply=json.dumps(answer)) as fake:
        llm = OpenAICompatLLM(base_url=fake.url, model="llama3.1", api_key=fake.api_key)
        result = summarize(client, llm, conversation_id)
        client.portal.call(llm.aclose)  # type: ignore[union-attr]
        assert "Already saved memories" in fake.requests[-1].body["messages"][1]["content"]
    assert result.extracted and result.summary == answer["summary"]
    [memory] = client.get("/v1/memories", headers=auth).json()["items"]
    assert memory["title"] == "Our wedding in Busan" and memory["happened_on"] is None
    assert memory["source"] == "conversation" and memory["people"] == ["Tom"]


@pytest.mark.parametrize("answer", ["I'm sorry, I cannot do that.", Reply.error(503)], ids=["prose", "503"])
def test_a_failed_extraction_changes_nothing(
    client: TestClient, auth: dict[str, str], gemini: FakeGemini, answer: Any
) -> None:
    """Prose instead of JSON, or a failing model: the call's own summary stays and no memory is made."""
    conversation_id = stored_call(client, auth, KO_CALL, "ko")
    gemini.script(answer)
    llm = GeminiLLM(api_key=gemini.api_key, model="gemini-2.5-flash", base_url=gemini.url)
    result = summarize(client, llm, conversation_id)
    assert not result.extracted and result.reason
    assert (
        client.get(f"/v1/conversations/{conversation_id}", headers=auth).json()["summary"] == "(first words)"
    )
    assert client.get("/v1/memories", headers=auth).json()["items"] == []


def test_offline_companion_extracts_nothing(client: TestClient, auth: dict[str, str]) -> None:
    """With the offline companion the summary is the call's own and no memories are made."""
    conversation_id = stored_call(client, auth, KO_CALL, "ko")
    result = summarize(client, OfflineLLM(), conversation_id)
    assert not result.extracted and result.reason == "the offline companion does not extract"
    assert result.summary == "(first words)"
    assert client.get("/v1/memories", headers=auth).json()["items"] == []


def test_hang_up_summarises_in_the_background(
    client: TestClient, auth: dict[str, str], gemini: FakeGemini
) -> None:
    """`CallCompanion.after_call` returns at once; the queued summary then stores the memory."""
    conversation_id = stored_call(client, auth, KO_CALL, "ko")
    gemini.script(Reply(text=json.dumps(KO_ANSWER, ensure_ascii=False)))
    services = client.app.state.services  # type: ignore[attr-defined]
    llm = GeminiLLM(api_key=gemini.api_key, model="gemini-2.5-flash", base_url=gemini.url)

    async def hang_up() -> CallSummary | None:
        async with services.sessions() as s:
            user = await s.get(User, user_id(client, auth))
        companion = CallCompanion(services, user, language="ko")
        companion.conversation_id = conversation_id
        task = companion.after_call(llm)
        assert task is not None and not task.done()
        return await task

    assert client.portal is not None
    result = client.portal.call(hang_up)
    assert result is not None and len(result.memory_ids) == 2
    titles = {m["title"] for m in client.get("/v1/memories", headers=auth).json()["items"]}
    assert titles == {"첫 월급 날의 다방", "고향 집"}
