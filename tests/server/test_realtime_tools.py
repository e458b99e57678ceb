"""Client-defined tools over a real socket: the official openai SDK defines `get_weather`, the model
calls it, the client answers, and the model speaks from its answer.

Two live servers, one on the fake Gemini and one on the fake OpenAI-compatible server, each
scripted to call tools in its own wire format; every round trip runs on both, and what each fake
received is checked in that API's shape (functionCall then functionResponse; tool_calls then a
"tool" message). The fakes refuse a call sent back without its result, as the real APIs do.
Turns are text (turn detection off; instant STT), replies are spoken by espeak-ng.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from openai import AsyncOpenAI

from bench import engines
from tests.conftest import LiveServer, make_settings
from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.openai_chat import FakeChat

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Today's weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city, e.g. Seoul"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ANSWER = "It is sunny and twenty one degrees in Seoul."
OUTPUT = '{"sky": "sunny", "celsius": 21}'


@dataclass
class Upstream:
    """A live server and the fake LLM behind it."""

    name: str
    fake: FakeGemini | FakeChat
    server: LiveServer
    token: str


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    engines.register()  # the instant STT (turns here are text)
    tmp = tmp_path_factory.mktemp("tools")

    def settings(llm_engine: str, **llm: Any) -> Any:
        return make_settings(
            tmp, f"sqlite+aiosqlite:///{tmp / llm_engine}.db", preload_engines=True,
            stt_engine=engines.NAME, tts_engine="espeak", llm_engine=llm_engine,
            call_summaries=False,  # no after-call request may take a scripted reply
            **llm,
        )  # fmt: skip

    with (
        FakeGemini(reply="Nice to hear from you.", ttft_s=0.02) as gemini,
        FakeChat(reply="Nice to hear from you.", ttft_s=0.02) as chat,
        LiveServer(settings("gemini", gemini_base_url=gemini.url, gemini_api_key=gemini.api_key)) as g,
        LiveServer(
            settings("openai_compat", openai_compat_base_url=chat.url, openai_compat_api_key=chat.api_key)
        ) as o,
    ):
        yield {
            "gemini": Upstream("gemini", gemini, g, login(g)),
            "openai_compat": Upstream("openai_compat", chat, o, login(o)),
        }


def login(server: LiveServer) -> str:
    r = httpx.post(f"{server.url}/v1/auth/dev-login", json={"name": "tools-kim"}, trust_env=False)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@pytest.fixture(params=["gemini", "openai_compat"])
def upstream(request: pytest.FixtureRequest, upstreams: dict[str, Upstream]) -> Iterator[Upstream]:
    up = upstreams[request.param]
    yield up
    up.fake.clear_script()


def connect(up: Upstream) -> Any:
    client = AsyncOpenAI(
        api_key=up.token, base_url=f"{up.server.url}/v1", websocket_base_url=f"{up.server.ws_url}/v1"
    )
    return client.realtime.connect(model="silvertalk")


async def until(conn: Any, kind: str, seen: list[Any], timeout: float = 60) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = await asyncio.wait_for(conn.recv(), deadline - time.monotonic())
        seen.append(event)
        if event.type == kind:
            return event
    raise AssertionError(f"no {kind}")


async def start(conn: Any, seen: list[Any]) -> Any:
    """A text-only English session offering get_weather; returns session.updated."""
    await until(conn, "session.created", seen)
    await conn.session.update(
        session={
            "type": "realtime",
            "tools": [WEATHER],
            "tool_choice": "auto",
            "audio": {"input": {"turn_detection": None, "transcription": {"language": "en"}}},
        }
    )
    return await until(conn, "session.updated", seen)


async def say(conn: Any, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await conn.conversation.item.create(item=item)
    await conn.response.create()


def spoken(done: Any) -> str:
    return str(done.response.output[0].content[0].transcript)


# --- what each fake received, in its own wire shape --------------------------------------------


def gemini_turn(request: Recorded) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The last model turn with function calls, and the user turn after it, of a Gemini request."""
    contents = request.body["contents"]
    at = max(n for n, c in enumerate(contents) if any("functionCall" in p for p in c["parts"]))
    return contents[at]["parts"], contents[at + 1]["parts"]


def chat_turn(request: Recorded) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The last assistant message with tool_calls, and the tool messages after it."""
    messages = request.body["messages"]
    at = max(n for n, m in enumerate(messages) if m.get("tool_calls"))
    after = messages[at + 1 :]
    return messages[at], after[: next((n for n, m in enumerate(after) if m["role"] != "tool"), len(after))]


def declared(request: Recorded) -> set[str]:
    """The function names a request offered the model."""
    if "contents" in request.body:
        return {d["name"] for t in request.body["tools"] for d in t["functionDeclarations"]}
    return {t["function"]["name"] for t in request.body["tools"]}


# --- the round trips -------------------------------------------------------------------------


async def test_a_client_tool_round_trip_through_the_sdk(upstream: Upstream) -> None:
    """get_weather: the model's call reaches the SDK (item added, arguments delta and done, listed in
    response.done after the words said first); the client's output and response.create reach the
    model as its call and the call's result; the answer comes back spoken."""
    fake, first = upstream.fake, len(upstream.fake.requests)
    fake.script(Reply.call("get_weather", text="Let me check the weather.", city="Seoul"), Reply(text=ANSWER))
    async with connect(upstream) as conn:
        seen: list[Any] = []
        updated = await start(conn, seen)
        assert [t.name for t in updated.session.tools] == [
            "get_weather"
        ] and updated.session.tool_choice == "auto"
        assert updated.session.tools[0].parameters == WEATHER["parameters"]
        await say(conn, "What's the weather in Seoul?")
        done = await until(conn, "response.done", seen)
        assert done.response.status == "completed"
        message, call = done.response.output
        assert message.type == "message" and spoken(done) == "Let me check the weather."
        assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
        assert json.loads(call.arguments) == {"city": "Seoul"} and call.call_id
        added = [e for e in seen if e.type == "response.output_item.added" and e.item.type == "function_call"]
        assert [(e.item.status, e.item.arguments, e.output_index) for e in added] == [("in_progress", "", 1)]
        deltas = [e for e in seen if e.type == "response.function_call_arguments.delta"]
        assert "".join(e.delta for e in deltas) == call.arguments
        assert all((e.call_id, e.item_id, e.output_index) == (call.call_id, call.id, 1) for e in deltas)
        args_done = next(e for e in seen if e.type == "response.function_call_arguments.done")
        assert (args_done.name, args_done.arguments, args_done.call_id) == (
            "get_weather",
            call.arguments,
            call.call_id,
        )
        assert len(fake.requests) == first + 1  # the server ran nothing: the reply ended with the call
        assert "get_weather" in declared(fake.requests[first])

        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": OUTPUT}
        )
        created = await until(conn, "conversation.item.created", seen)
        assert created.item.type == "function_call_output" and created.previous_item_id == call.id
        await conn.response.create()
        answer = await until(conn, "response.done", seen)
        assert answer.response.status == "completed" and spoken(answer) == ANSWER
        rid = answer.response.id
        assert any(e.type == "response.output_audio.delta" and e.response_id == rid for e in seen)
        transcript = "".join(
            e.delta
            for e in seen
            if e.type == "response.output_audio_transcript.delta" and e.response_id == rid
        )
        assert transcript.strip() == ANSWER

    request = fake.requests[first + 1]
    if isinstance(fake, FakeGemini):
        model, user = gemini_turn(request)
        assert model == [
            {"text": "Let me check the weather."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}},
        ]
        assert user == [{"functionResponse": {"name": "get_weather", "response": json.loads(OUTPUT)}}]
    else:
        assistant, tools = chat_turn(request)
        assert assistant["content"] == "Let me check the weather."
        assert assistant["tool_calls"] == [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.arguments},
            }
        ]
        assert tools == [{"role": "tool", "tool_call_id": call.call_id, "content": OUTPUT}]


async def test_a_server_tool_and_a_client_tool_in_one_turn(upstream: Upstream) -> None:
    """list_events and get_weather in one model turn: the server runs list_events (the client never
    sees it), get_weather goes to the client; with its output, the model gets both calls in one
    turn and both results after it."""
    fake, first = upstream.fake, len(upstream.fake.requests)
    fake.script(
        Reply(calls=[("list_events", {}), ("get_weather", {"city": "Seoul"})]),
        Reply(text="Nothing is on today, and it is sunny."),
    )
    async with connect(upstream) as conn:
        seen: list[Any] = []
        await start(conn, seen)
        await say(conn, "What's on today, and what's the weather?")
        done = await until(conn, "response.done", seen)
        [call] = done.response.output  # nothing said: no message item, as with OpenAI
        assert (call.type, call.name) == ("function_call", "get_weather")
        assert not [e for e in seen if "list_events" in e.model_dump_json()]
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."}
        )
        await conn.response.create()
        answer = await until(conn, "response.done", seen)
        assert (
            answer.response.status == "completed"
            and spoken(answer) == "Nothing is on today, and it is sunny."
        )
    assert len(fake.requests) == first + 2
    request = fake.requests[first + 1]
    if isinstance(fake, FakeGemini):
        model, user = gemini_turn(request)
        assert [p["functionCall"]["name"] for p in model] == ["list_events", "get_weather"]
        events, weather = (p["functionResponse"] for p in user)
        assert events["name"] == "list_events" and events["response"]["ok"] is True
        assert weather == {"name": "get_weather", "response": {"output": "Sunny."}}
    else:
        assistant, tools = chat_turn(request)
        listed, weather_call = assistant["tool_calls"]
        assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["list_events", "get_weather"]
        assert [t["tool_call_id"] for t in tools] == [listed["id"], weather_call["id"]]
        assert json.loads(tools[0]["content"])["ok"] is True and tools[1]["content"] == "Sunny."


async def test_a_call_still_unanswered_is_answered_for_the_model(upstream: Upstream) -> None:
    """The caller speaks again before the client answered: the next reply's history answers the
    call with "no result yet" (both APIs refuse a call without a result), and the reply is spoken."""
    fake, first = upstream.fake, len(upstream.fake.requests)
    fake.script(Reply.call("get_weather", city="Seoul"), Reply(text="Of course, take your time."))
    async with connect(upstream) as conn:
        seen: list[Any] = []
        await start(conn, seen)
        await say(conn, "What's the weather?")
        await until(conn, "response.done", seen)
        await say(conn, "Actually, never mind.")
        done = await until(conn, "response.done", seen)
        assert done.response.status == "completed" and spoken(done) == "Of course, take your time."
    body = json.dumps(fake.requests[first + 1].body)
    assert "has not sent this call's result" in body


async def test_the_beta_sdk_gets_the_call_in_beta_names(upstreams: dict[str, Upstream]) -> None:
    """A beta client (OpenAI-Beta: realtime=v1) sets tools in the beta session shape, requires a
    call for one response, and gets it as beta events (conversation.item.created, no .added); its
    output is answered in speech, the next response free to answer."""
    up = upstreams["gemini"]
    up.fake.script(Reply.call("get_weather", city="Seoul"), Reply(text=ANSWER))
    client = AsyncOpenAI(
        api_key=up.token, base_url=f"{up.server.url}/v1", websocket_base_url=f"{up.server.ws_url}/v1"
    )
    async with client.beta.realtime.connect(model="silvertalk") as conn:
        seen: list[Any] = []
        await until(conn, "session.created", seen)
        session: Any = {  # the beta shape, which the GA SDK's types do not describe
            "tools": [WEATHER],
            "turn_detection": None,
            "input_audio_transcription": {"language": "en"},
        }
        await conn.session.update(session=session)
        updated = await until(conn, "session.updated", seen)
        assert updated.session.tool_choice == "auto" and updated.session.tools[0].name == "get_weather"
        item: Any = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather?"}],
        }
        await conn.conversation.item.create(item=item)
        await conn.response.create(response={"tool_choice": "required"})
        done = await until(conn, "response.done", seen)
        [call] = done.response.output
        assert (call.type, call.name, call.status) == ("function_call", "get_weather", "completed")
        names = [e.type for e in seen]
        assert "conversation.item.added" not in names and "response.function_call_arguments.done" in names
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": OUTPUT}
        )
        await conn.response.create()
        answer = await until(conn, "response.done", seen)
        assert answer.response.output[0].content[0].transcript == ANSWER
        assert any(e.type == "response.audio.delta" and e.response_id == answer.response.id for e in seen)
    required, free = (r.body for r in up.fake.requests[-2:])
    calling = (
        required["toolConfig"].get("functionCallingConfig")
        or required["toolConfig"]["function_calling_config"]
    )
    assert calling["mode"] == "ANY" and "toolConfig" not in free


# --- refusals --------------------------------------------------------------------------------


async def test_bad_tools_and_outputs_get_errors_naming_the_field(upstreams: dict[str, Upstream]) -> None:
    """A bad tool name, a bad schema, a companion's tool name, a tool_choice naming no tool, an
    output for no call or a second output: an `error` naming the field, echoing event_id; the
    session keeps its tools, and the call goes on."""
    up = upstreams["gemini"]
    async with websockets.connect(
        f"{up.server.ws_url}/v1/realtime", additional_headers={"Authorization": f"Bearer {up.token}"}
    ) as ws:

        async def send(event: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(event))
            return dict(json.loads(await ws.recv()))

        assert json.loads(await ws.recv())["type"] == "session.created"
        good = await send({"type": "session.update", "session": {"tools": [WEATHER]}})
        assert good["type"] == "session.updated" and good["session"]["tools"] == [WEATHER]
        refusals: list[tuple[dict[str, Any], str]] = [
            ({"tools": [{**WEATHER, "name": "get weather"}]}, "session.tools[0].name"),
            ({"tools": [{**WEATHER, "parameters": {"required": "city"}}]}, "session.tools[0].parameters"),
            ({"tools": [{**WEATHER, "name": "show_photo"}]}, "session.tools[0].name"),
            ({"tool_choice": {"type": "function", "name": "call_family"}}, "session.tool_choice"),
        ]  # fmt: skip
        for session, param in refusals:
            err = await send({"type": "session.update", "event_id": "evt_s", "session": session})
            assert err["type"] == "error" and err["error"]["param"] == param, err
            assert err["error"]["event_id"] == "evt_s"
        still = await send({"type": "session.update", "session": {}})
        assert still["session"]["tools"] == [WEATHER] and still["session"]["tool_choice"] == "auto"

        output = {"type": "function_call_output", "call_id": "call_x", "output": "Sunny."}
        err = await send({"type": "conversation.item.create", "event_id": "evt_o", "item": output})
        assert (
            err["error"]["code"] == "item_create_invalid_call_id" and err["error"]["param"] == "item.call_id"
        )
        assert err["error"]["event_id"] == "evt_o"
        call = {
            "type": "function_call",
            "call_id": "call_x",
            "name": "get_weather",
            "arguments": '{"city": "Seoul"}',
        }
        added = await send({"type": "conversation.item.create", "item": call})
        assert added["type"] == "conversation.item.added" and added["item"]["call_id"] == "call_x"
        assert json.loads(await ws.recv())["type"] == "conversation.item.created"
        assert (await send({"type": "conversation.item.create", "item": output}))[
            "type"
        ] == "conversation.item.added"
        assert json.loads(await ws.recv())["type"] == "conversation.item.created"
        again = await send({"type": "conversation.item.create", "event_id": "evt_2", "item": output})
        assert (
            again["error"]["param"] == "item.call_id" and "already has an output" in again["error"]["message"]
        )
        bad = {"tool_choice": {"type": "function", "name": "call_family"}}
        err = await send({"type": "response.create", "event_id": "evt_r", "response": bad})
        assert err["error"]["param"] == "response.tool_choice" and err["error"]["event_id"] == "evt_r"
