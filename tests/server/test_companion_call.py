"""The companion in a real call: tools run by the core, emergencies, reminders and the after-call summary.

A live server with the real engines (Whisper loaded, Piper/espeak speaking) and the fake Gemini
scripted to call tools in its real wire format (functionCall parts, functionResponse back). Turns
are text items (`conversation.item.create` + `response.create`, turn detection off), so the
tests exercise the reply loop, not speech recognition; every reply is still synthesised and sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import websockets

from tests import images
from tests.conftest import LiveServer, make_settings
from tests.fakes.caregiver import Caregiver
from tests.fakes.gemini import FakeGemini, Reply

pytestmark = pytest.mark.slow

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper-base"
SECRET = "whsec_" + base64.b64encode(b"caregiver-webhook-secret-32bytes").decode()
SEOUL = ZoneInfo("Asia/Seoul")
SUMMARY = {
    "summary": "영희 님과 서울역 다방 이야기를 했어요.",
    "memories": [
        {"title": "서울역 다방", "body": "영희와 다방에 갔다.", "people": ["영희"], "place": "서울역"}
    ],
}


def answer(body: dict[str, Any]) -> str:
    """Unscripted requests: the after-call extraction gets JSON, anything else a short Korean line."""
    system = json.dumps(body.get("systemInstruction", {}), ensure_ascii=False)
    return json.dumps(SUMMARY, ensure_ascii=False) if "JSON" in system else "네, 그러셨군요."


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(reply=answer, ttft_s=0.05) as fake:
        yield fake


@pytest.fixture(scope="module")
def caregiver() -> Iterator[Caregiver]:
    with Caregiver(SECRET, fail_first=1) as receiver:
        yield receiver


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, gemini: FakeGemini, caregiver: Caregiver
) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("companion")
    settings = make_settings(
        tmp, f"sqlite+aiosqlite:///{tmp / 'c.db'}", preload_engines=True, stt_model_dir=MODEL_DIR,
        llm_engine="gemini", gemini_base_url=gemini.url, gemini_api_key=gemini.api_key,
        caregiver_webhook_url=caregiver.url, caregiver_webhook_secret=SECRET,
        caregiver_webhook_backoff_s=0.1,
    )  # fmt: skip
    with LiveServer(settings) as live:
        yield live


class Caller:
    """One call over a raw WebSocket (custom server events included), text turns only."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.seen = ws, []  # type: ignore[var-annotated]

    async def until(self, kind: str, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = json.loads(await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic()))
            self.seen.append(event)
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]
        raise AssertionError(f"no {kind}")

    async def say(self, text: str) -> dict[str, Any]:
        """A user text turn and response.create; returns the response.done."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await self.ws.send(json.dumps({"type": "response.create"}))
        return await self.until("response.done")


async def login(server: LiveServer, name: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
        r = await http.post("/v1/auth/dev-login", json={"name": name})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def rest(server: LiveServer, method: str, path: str, auth: dict[str, str], **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as http:
        r = await http.request(method, path, headers=auth, **kw)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


@asynccontextmanager
async def call(server: LiveServer, auth: dict[str, str], *, talks: bool = True) -> AsyncIterator[Caller]:
    """A call; on leaving, the hang-up and (when the caller `talks`) its after-call summary are
    waited for, so the summary's request to the fake cannot take a reply the next test scripted."""
    headers = {"Authorization": auth["Authorization"]}
    async with websockets.connect(f"{server.ws_url}/v1/realtime", additional_headers=headers) as ws:
        caller = Caller(ws)
        await caller.until("session.created")
        session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        await caller.until("session.updated")
        yield caller
    for _ in range(300 if talks else 0):
        conversations = (await rest(server, "GET", "/v1/conversations", auth))["items"]
        if conversations and conversations[0].get("summary") == SUMMARY["summary"]:
            return
        await asyncio.sleep(0.1)
    if talks:
        raise AssertionError(f"the call was not summarised: {conversations}")


def spoken(done: dict[str, Any]) -> str:
    return str(done["response"]["output"][0]["content"][0]["transcript"])


def tool_results(fake: FakeGemini, since: int) -> list[dict[str, Any]]:
    """The functionResponse parts our server sent back to the fake since request `since`."""
    found = []
    for req in fake.requests[since:]:
        for content in req.body["contents"]:
            found += [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
    return found


async def test_a_reminder_is_added_only_after_a_spoken_yes(server: LiveServer, gemini: FakeGemini) -> None:
    """The model asks before adding (the tool refuses unconfirmed), the caller says yes, the event exists."""
    auth = await login(server, "reminder")
    start = (datetime.now(SEOUL) + timedelta(days=1)).strftime("%Y-%m-%dT09:00")
    pill = {"title": "혈압약", "start": start, "repeat": "FREQ=DAILY"}
    async with call(server, auth) as caller:
        first = len(gemini.requests)
        gemini.script(
            Reply.call("add_event", **pill), Reply(text="내일부터 매일 아침 9시에 혈압약 알려 드릴까요?")
        )
        asked = await caller.say("내일부터 아침 9시에 혈압약 먹으라고 알려 줘요")
        assert asked["response"]["status"] == "completed" and spoken(asked).endswith("드릴까요?")
        [refusal] = tool_results(gemini, first)
        assert refusal["name"] == "add_event" and refusal["response"]["needs_confirmation"] is True
        assert (await rest(server, "GET", "/v1/events", auth))["items"] == []

        gemini.script(Reply.call("add_event", **pill, confirmed=True), Reply(text="네, 넣어 드렸어요."))
        done = await caller.say("네, 그렇게 해 주세요.")
        assert spoken(done) == "네, 넣어 드렸어요."
        assert done["response"]["silvertalk_timings"]["tools_done_ms"] > 0
    [event] = (await rest(server, "GET", "/v1/events", auth))["items"]
    assert event["title"] == "혈압약" and event["rrule"] == "FREQ=DAILY"


async def test_a_question_about_a_memory_finds_it_by_a_name(server: LiveServer, gemini: FakeGemini) -> None:
    """find_memories runs with the person's name; the model answers from the memory it got back."""
    auth = await login(server, "memories")
    story = {"title": "첫 월급", "body": "영희랑 다방에 갔어요.", "people": ["영희"]}
    await rest(server, "POST", "/v1/memories", auth, json=story)

    def from_result(body: dict[str, Any]) -> str:
        parts = body["contents"][-1]["parts"]
        memories = parts[0]["functionResponse"]["response"]["memories"]
        return f"{memories[0]['title']} 이야기 말씀이시죠? 정말 좋은 추억이에요."

    async with call(server, auth) as caller:
        gemini.script(Reply.call("find_memories", people=["영희"]))
        saved_reply, gemini.reply = gemini.reply, from_result
        try:
            done = await caller.say("영희 기억나요?")
        finally:
            gemini.reply = saved_reply
    assert spoken(done).startswith("첫 월급 이야기 말씀이시죠?")


async def test_show_photo_reaches_the_client(server: LiveServer, gemini: FakeGemini) -> None:
    """show_photo sends silvertalk.photo.show with the photo's URLs before the spoken answer."""
    auth = await login(server, "photos")
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        photo = images.upload_photo(http, auth, caption="서울역")
    await rest(server, "POST", "/v1/memories", auth, json={"title": "첫 월급", "photo_ids": [photo["id"]]})
    async with call(server, auth) as caller:
        gemini.script(Reply.call("show_photo", words="첫 월급"), Reply(text="사진 띄워 드렸어요."))
        await caller.say("첫 월급 사진 보여 줘요")
    shows = [e for e in caller.seen if e["type"] == "silvertalk.photo.show"]
    assert len(shows) == 1 and shows[0]["photo"]["urls"] == photo["urls"] and shows[0]["event_id"]
    types = [e["type"] for e in caller.seen]
    assert types.index("silvertalk.photo.show") < types.index("response.done")


async def test_emergency_words_get_help_whatever_the_model(
    server: LiveServer, gemini: FakeGemini, caregiver: Caregiver
) -> None:
    """The calm reply with 119 replaces the model's; the alert is stored and sent signed; the call goes on."""
    auth = await login(server, "emergency")
    async with call(server, auth) as caller:
        gemini.script(Reply(text="오늘 날씨 이야기를 해 볼까요?"))  # what the model would have said
        done = await caller.say("살려 주세요, 넘어져서 못 일어나겠어요")
        assert "119" in spoken(done) and "가족" in spoken(done)
        after = await caller.say("고마워요")
        assert after["response"]["status"] == "completed" and spoken(after) == "오늘 날씨 이야기를 해 볼까요?"
        for _ in range(100):
            alerts = (await rest(server, "GET", "/v1/alerts", auth))["items"]
            if alerts and alerts[0]["delivery"] == "delivered":
                break
            await asyncio.sleep(0.1)
    [alert] = alerts
    assert alert["kind"] == "fall" and alert["delivery"] == "delivered" and alert["conversation_id"]
    delivered = [d for d in caregiver.deliveries if d.body["data"]["alert_id"] == alert["id"]]
    assert [d.status for d in delivered] == [503, 200] and all(d.signature_valid for d in delivered)


async def test_reminders_at_the_start_and_when_due(server: LiveServer) -> None:
    """At the start the companion names today's plan; a reminder due during the call is said between turns."""
    auth = await login(server, "today")
    now = datetime.now(SEOUL)
    soon = now + timedelta(minutes=1, seconds=8)
    # Both events today (the gateway loads today's): late in the evening "later" moves closer.
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    later = min(now + timedelta(hours=2), midnight - timedelta(seconds=30))
    if later <= soon + timedelta(seconds=30):
        pytest.skip("too close to midnight in Seoul for two events later today")
    await rest(server, "POST", "/v1/events", auth, json={"title": "병원", "starts_at": later.isoformat()})
    pill = {"title": "혈압약", "starts_at": soon.isoformat(), "remind_minutes_before": 1}
    await rest(server, "POST", "/v1/events", auth, json=pill)
    async with call(server, auth, talks=False) as caller:
        opening = await caller.until("response.done", timeout=30)
        assert spoken(opening).startswith("오늘 일정을 알려 드릴게요.") and "병원" in spoken(opening)
        due = await caller.until("response.done", timeout=40)
        assert spoken(due).startswith("잠깐 알려 드릴게요.") and "혈압약" in spoken(due)


async def test_a_hang_up_leaves_a_summary_and_a_memory(server: LiveServer, gemini: FakeGemini) -> None:
    """After the call, the extraction (answered as JSON by the fake) stores the summary and a memory."""
    auth = await login(server, "summary")
    async with call(server, auth) as caller:
        await caller.say("옛날에 영희랑 서울역 다방에 자주 갔어요.")
    # Leaving `call` waited for the conversation's summary to be the fake's.
    [memory] = (await rest(server, "GET", "/v1/memories", auth))["items"]
    assert memory["title"] == "서울역 다방" and memory["source"] == "conversation"
