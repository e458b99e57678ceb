"""The companion's tool specs go out through both real LLM clients, and results come back in."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import types

from pipeline import FatalEngineError
from pipeline.engines.base import ChatContext, Message, TextDelta, ToolCall
from pipeline.engines.gemini import GeminiLLM
from pipeline.engines.openai_compat import OpenAICompatLLM
from pipeline.tools import CHANGES, TOOL_NAMES, TOOL_SPECS, ToolRunner, run_call
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.openai_chat import FakeChat

NAMES = {"list_events", "add_event", "find_memories", "save_memory", "show_photo", "make_picture"}
CTX = ChatContext(system_prompt="be kind", language="ko", tools=TOOL_SPECS)


class EchoRunner:
    """A runner that answers every call with what it was asked (the wire test needs no database)."""

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "tool": name, "asked": arguments}


def test_names_schemas_and_changing_tools() -> None:
    """The six fixed names; every schema is a Gemini Schema; the three changing tools take `confirmed`."""
    assert TOOL_NAMES == NAMES and {"add_event", "save_memory", "make_picture"} == CHANGES
    for spec in TOOL_SPECS:
        types.Schema.model_validate(spec.parameters)
        assert ("confirmed" in spec.parameters["properties"]) == (spec.name in CHANGES)
    assert isinstance(EchoRunner(), ToolRunner)


async def round_trip(llm: Any, fake: Any) -> tuple[list[ToolCall], str]:
    """Ask, get a call, run it, send the result back, get the spoken answer."""
    history = [Message("user", "오늘 뭐 있어요?")]
    calls = [o async for o in llm.stream(history, CTX) if isinstance(o, ToolCall)]
    results = [await run_call(EchoRunner(), c) for c in calls]
    history += [Message("assistant", tool_calls=tuple(calls))]
    history += [Message("tool", tool_result=r) for r in results]
    text = "".join([o.text async for o in llm.stream(history, CTX) if isinstance(o, TextDelta)])
    return calls, text


async def test_gemini_function_call_round_trip() -> None:
    """Gemini gets all six declarations, calls list_events, and gets the functionResponse back."""
    with FakeGemini(ttft_s=0.01) as fake:
        fake.script(Reply.call("list_events", date="2026-11-28"), Reply(text="내일은 병원 가셔요."))
        llm = GeminiLLM(api_key=fake.api_key, model="gemini-2.5-flash", base_url=fake.url)
        calls, text = await round_trip(llm, fake)
        await llm.aclose()
    sent = fake.requests[0].body["tools"][0]["functionDeclarations"]
    assert {d["name"] for d in sent} == NAMES
    assert [(c.name, c.arguments) for c in calls] == [("list_events", {"date": "2026-11-28"})]
    assert text == "내일은 병원 가셔요."
    back = fake.requests[1].body["contents"][-1]["parts"][0]["functionResponse"]
    assert back["name"] == "list_events" and back["response"]["asked"] == {"date": "2026-11-28"}


async def test_openai_compatible_tool_call_round_trip() -> None:
    """The OpenAI-compatible engine sends the six tools, runs find_memories, and sends a tool message back."""
    with FakeChat(ttft_s=0.01) as fake:
        fake.script(Reply.call("find_memories", people=["영희"]), "영희 님과 서울역에 가셨죠.")
        llm = OpenAICompatLLM(base_url=fake.url, model="llama3.1", api_key=fake.api_key)
        calls, text = await round_trip(llm, fake)
        await llm.aclose()
    assert {t["function"]["name"] for t in fake.requests[0].body["tools"]} == NAMES
    assert [(c.name, c.arguments) for c in calls] == [("find_memories", {"people": ["영희"]})]
    assert text == "영희 님과 서울역에 가셨죠."
    tool_message = fake.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == calls[0].id


async def test_fakes_refuse_an_unanswered_call() -> None:
    """Like the real APIs, the fakes answer 400 when a tool call is sent back without its result."""
    history = [Message("user", "hi"), Message("assistant", tool_calls=(ToolCall("c1", "list_events", {}),))]
    history.append(Message("user", "hello?"))
    with FakeChat(ttft_s=0.01) as fake:
        llm = OpenAICompatLLM(base_url=fake.url, model="llama3.1", api_key=fake.api_key)
        try:
            with pytest.raises(FatalEngineError, match="400"):
                await anext(aiter(llm.stream(history, CTX)))
        finally:
            await llm.aclose()
