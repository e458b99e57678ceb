"""The client's own tools in the core: a call ends the reply and goes out whole, the client's output
comes back as an item, and the next reply's history holds both in the shape both APIs require.

Plus the guard rails: a speculative reply hands out no call before it is released (a discarded one
never does), a reply cut before its calls went out drops them, and tool_choice shapes what the
model is offered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from pipeline.engines.base import (
    ChatContext,
    LLMOutput,
    Message,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from pipeline.events import (
    CallItemCreated,
    ErrorEvent,
    FunctionCall,
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
)
from pipeline.tools import NO_OUTPUT, TOOL_SPECS, ClientTools
from pipeline.turns import Item, history
from tests.pipeline.callkit import Call, FakeLLM, silence, speech

WEATHER = ToolSpec(
    "get_weather",
    "Today's weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
SEOUL = ToolCall("call_1", "get_weather", {"city": "Seoul"})


class ScriptLLM(FakeLLM):
    """Answers each request with the next scripted turn (words and calls), then with `reply`."""

    def __init__(self, *turns: Sequence[str | ToolCall]) -> None:
        super().__init__("It is sunny in Seoul today.")
        self.turns = list(turns)
        self.contexts: list[ChatContext] = []

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        self.histories.append(list(history))
        self.contexts.append(context)
        for out in self.turns.pop(0) if self.turns else [self.reply]:
            await asyncio.sleep(0)
            yield TextDelta(out) if isinstance(out, str) else out


class Runner:
    """The companion's tools, recorded (the real runner is tested in tests/server)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(name)
        return {"ok": True, "events": []}


Choice = Literal["auto", "none", "required", "function"]


def setup(llm: ScriptLLM, *, choice: Choice = "auto", runner: Runner | None = None, **config: object) -> Call:
    call = Call(**config)
    call.engines.llm = llm
    call.conv.core.tools = runner
    call.conv.context = ChatContext("be kind", "en", tools=TOOL_SPECS if runner else ())
    call.conv.client_tools = ClientTools((WEATHER,), choice, "get_weather" if choice == "function" else None)
    return call


def kinds(call: Call) -> list[str]:
    return [f"{i.role}:{i.kind}" for i in call.conv.core.items]


async def test_a_call_ends_the_reply_after_its_words_and_its_output_reaches_the_model() -> None:
    """Words, then a call of get_weather: the words are spoken, the call goes out with response.done
    (not run, no second model turn); the client's output and response.create give the answer, the
    model seeing its words and call as one turn and the output right after."""
    llm = ScriptLLM(["Let me look. ", SEOUL])
    call = setup(llm)
    user = call.conv.add_text("user", "What's the weather in Seoul?")
    reply = call.conv.create_response()
    assert reply is not None
    await call.until(ResponseDone)
    [done] = call.of(ResponseDone)
    [handed] = done.calls
    assert handed == FunctionCall(handed.item_id, reply.item_id, "call_1", "get_weather", '{"city": "Seoul"}')
    assert done.status == "completed" and done.message and done.text == "Let me look."
    assert len(llm.histories) == 1 and call.engines.tts.spoken == ["Let me look."]
    assert [t.name for t in llm.contexts[0].tools] == ["get_weather"]
    assert llm.contexts[0].tool_choice == ToolChoice()
    audio = [n for n, e in enumerate(call.events) if isinstance(e, ReplyAudio)]
    assert audio and call.events.index(done) > audio[-1]
    assert kinds(call) == ["user:text", "assistant:audio", "assistant:function_call"]
    assert call.conv.core.items[-1].id == handed.item_id

    item = call.conv.add_function_output("call_1", '{"sky": "clear", "celsius": 21}', "item_out")
    assert item is not None
    await call.settle()
    created = call.of(CallItemCreated)
    assert created == [
        CallItemCreated(
            "item_out",
            handed.item_id,
            "function_call_output",
            "call_1",
            output='{"sky": "clear", "celsius": 21}',
        )
    ]
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    await call.close()
    seen = llm.histories[1]
    assert [(m.role, m.text) for m in seen] == [
        ("user", user.text), ("assistant", "Let me look."), ("tool", ""),
    ]  # fmt: skip
    assert seen[1].tool_calls == (SEOUL,)
    result = seen[2].tool_result
    assert result is not None and result.call_id == "call_1" and result.name == "get_weather"
    assert (
        result.result == {"sky": "clear", "celsius": 21}
        and result.output == '{"sky": "clear", "celsius": 21}'
    )
    assert call.of(ResponseDone)[1].text == "It is sunny in Seoul today."


async def test_a_silent_call_has_no_message_and_an_unanswered_one_is_said_to_be() -> None:
    """A reply that only calls: no words, no message item (the call follows the user's item). When
    the next reply starts before the client answered, the model is told there is no result yet."""
    llm = ScriptLLM([SEOUL])
    call = setup(llm)
    user = call.conv.add_text("user", "Weather?")
    call.conv.create_response()
    await call.until(ResponseDone)
    [done] = call.of(ResponseDone)
    assert not done.message and done.status == "completed" and [c.call_id for c in done.calls] == ["call_1"]
    assert done.calls[0].previous_item_id == user.id
    assert not call.of(ReplyTextDelta) and not call.of(ReplyAudio) and call.engines.tts.spoken == []
    assert kinds(call) == ["user:text", "assistant:function_call"]
    call.conv.add_text("user", "Hello?")
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    await call.close()
    seen = llm.histories[1]
    assert [m.role for m in seen] == ["user", "assistant", "tool", "user"]
    assert seen[1].text == "" and seen[1].tool_calls == (SEOUL,)
    assert seen[2].tool_result is not None and seen[2].tool_result.result == NO_OUTPUT


async def test_server_and_client_tools_in_one_turn() -> None:
    """list_events and get_weather in one model turn: the companion's runs now, the client's goes
    out; the next reply sees the whole turn (both calls) and both results after it."""
    runner = Runner()
    list_events = ToolCall("call_s", "list_events", {})
    llm = ScriptLLM(["One moment. ", list_events, SEOUL])
    call = setup(llm, runner=runner)
    call.conv.add_text("user", "What's on today, and the weather?")
    call.conv.create_response()
    await call.until(ResponseDone)
    [done] = call.of(ResponseDone)
    assert runner.calls == ["list_events"] and [c.name for c in done.calls] == ["get_weather"]
    assert "tools_done_ms" in done.timings and len(llm.histories) == 1
    assert {t.name for t in llm.contexts[0].tools} == {t.name for t in TOOL_SPECS} | {"get_weather"}
    call.conv.add_function_output("call_1", "Sunny")
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    await call.close()
    seen = llm.histories[1]
    assert [m.role for m in seen] == ["user", "assistant", "tool", "tool"]
    assert seen[1].tool_calls == (list_events, SEOUL) and seen[1].text == "One moment."
    results = [m.tool_result for m in seen[2:]]
    assert [(r.call_id, r.result) for r in results if r] == [
        ("call_s", {"ok": True, "events": []}), ("call_1", {"output": "Sunny"}),
    ]  # fmt: skip


async def test_outputs_must_answer_a_call_of_this_conversation_once() -> None:
    """An output for no call, a second output, or a client call reusing a call_id: an error naming
    item.call_id, nothing added. A client-made call can be answered; a deleted call's output is
    left out of the history."""
    call = setup(ScriptLLM())
    assert call.conv.add_function_output("call_nope", "x", event_id="evt_1") is None
    made = call.conv.add_function_call("call_9", "get_weather", '{"city": "Busan"}', "item_call")
    assert made is not None and made.call == ToolCall("call_9", "get_weather", {"city": "Busan"})
    assert call.conv.add_function_output("call_9", "Rain", "item_out") is not None
    assert call.conv.add_function_output("call_9", "Rain again", event_id="evt_2") is None
    assert call.conv.add_function_call("call_9", "get_weather", "{}", event_id="evt_3") is None
    await call.settle()
    errors = call.of(ErrorEvent)
    assert [(e.code, e.param, e.event_id) for e in errors] == [
        ("item_create_invalid_call_id", "item.call_id", f"evt_{n}") for n in (1, 2, 3)
    ]
    assert "already has an output" in errors[1].message
    assert [c.kind for c in call.of(CallItemCreated)] == ["function_call", "function_call_output"]
    assert call.of(CallItemCreated)[0].arguments == '{"city": "Busan"}'
    assert [m.role for m in history(call.conv.core.items)] == ["assistant", "tool"]
    call.conv.delete_item("item_call")
    assert history(call.conv.core.items) == []
    await call.close()


def test_each_call_is_answered_right_after_its_turn_wherever_the_output_sits() -> None:
    """Two calls of one reply, answered in the other order with a user item between: the history
    has the turn with both calls, both results, then the user's words."""
    other = ToolCall("call_2", "get_weather", {"city": "Busan"})
    items = [
        Item("u1", "user", "text", "Weather in Seoul and Busan?"),
        Item("a1", "assistant", "audio", "Checking both."),
        Item("f1", "assistant", "function_call", call=SEOUL),
        Item("f2", "assistant", "function_call", call=other),
        Item("o2", "tool", "function_call_output", result=other_result(other, "Rain")),
        Item("u2", "user", "text", "Thanks."),
        Item("o1", "tool", "function_call_output", result=other_result(SEOUL, "Sun")),
    ]
    seen = history(items)
    assert [m.role for m in seen] == ["user", "assistant", "tool", "tool", "user"]
    assert seen[1].text == "Checking both." and seen[1].tool_calls == (SEOUL, other)
    assert [m.tool_result.output for m in seen[2:4] if m.tool_result] == ["Sun", "Rain"]


def other_result(call: ToolCall, output: str) -> Any:
    from pipeline.tools import client_result

    return client_result(call, output)


async def test_a_speculative_reply_hands_out_no_call_before_it_is_released() -> None:
    """The model calls get_weather while the caller pauses: nothing goes out and nothing joins the
    conversation; the caller goes on (the speculation is dropped), and the call that goes out is
    the one of the reply to the whole turn, once."""
    llm = ScriptLLM([SEOUL], [ToolCall("call_real", "get_weather", {"city": "Seoul"})])
    call = setup(llm)
    await call.feed(speech(900))
    await call.feed(silence(300))  # a pause: the speculative reply asks for the weather
    spec = call.conv.floor.spec
    assert spec is not None
    await call.settle(200)
    assert len(llm.histories) == 1  # the model did call
    assert not call.of(ResponseDone) and "assistant:function_call" not in kinds(call)
    await call.feed(speech(600))  # the caller goes on: the speculation is dropped
    await call.feed(silence(1200))
    await call.until(ResponseDone)
    await call.settle(50)
    await call.close()
    dones = call.of(ResponseDone)
    assert len(dones) == 1 and [c.call_id for c in dones[0].calls] == ["call_real"]
    assert kinds(call).count("assistant:function_call") == 1


async def test_a_reply_cut_before_its_calls_went_out_drops_them() -> None:
    """Cancelled while its words play: response.done says cancelled with no call, no call joins the
    conversation, and the next reply's history holds no unanswered call."""
    llm = ScriptLLM(["Let me look at the weather for you, it takes a moment. ", SEOUL])
    call = setup(llm, lead_ms=100.0)
    call.conv.add_text("user", "What's the weather?")
    call.conv.create_response()
    await call.until(ReplyAudio)
    assert len(llm.histories) == 1
    call.conv.cancel_response()
    await call.until(ResponseDone)
    [done] = call.of(ResponseDone)
    assert done.status == "cancelled" and done.calls == () and done.message
    assert "assistant:function_call" not in kinds(call)
    call.conv.add_text("user", "Never mind.")
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    await call.close()
    assert all(not m.tool_calls and m.role != "tool" for m in llm.histories[1])


async def test_tool_choice_shapes_what_the_model_is_offered() -> None:
    """none: the client's tools are not offered; required / a function: the first model turn must
    call (later turns, after the companion's tools ran, are free); response.create may bring its own."""
    cases: list[tuple[Choice, ToolChoice]] = [
        ("none", ToolChoice()),
        ("required", ToolChoice(required=True)),
        ("function", ToolChoice(required=True, name="get_weather")),
    ]
    for choice, first in cases:
        llm = ScriptLLM([ToolCall("call_s", "list_events", {})], ["Nothing on today."])
        call = setup(llm, choice=choice, runner=Runner())
        call.conv.add_text("user", "Anything today?")
        call.conv.create_response()
        await call.until(ResponseDone)
        await call.close()
        offered = {t.name for t in llm.contexts[0].tools}
        assert ("get_weather" in offered) is (choice != "none"), choice
        assert [c.tool_choice for c in llm.contexts] == [first, ToolChoice()], choice
    llm = ScriptLLM()
    call = setup(llm)
    call.conv.add_text("user", "Hi.")
    call.conv.create_response(client_tools=ClientTools((ToolSpec("hang_up", ""),), "required"))
    await call.until(ResponseDone)
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    await call.close()
    assert [[t.name for t in c.tools] for c in llm.contexts] == [["hang_up"], ["get_weather"]]
    assert llm.contexts[0].tool_choice == ToolChoice(required=True)
