"""The core's tool loop: the model calls a tool, the runner's result goes back, then it speaks.

Plus the guard rails: a speculative reply runs no tool with effects until the turn is the caller's
(a discarded speculation runs none), a model that never stops calling tools still ends its reply,
and words of emergency get the calm reply whatever the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pipeline.engines.base import ChatContext, LLMOutput, Message, TextDelta, ToolCall
from pipeline.events import ResponseDone
from pipeline.reply import MAX_TOOL_ROUNDS
from pipeline.tools import TOOL_SPECS
from tests.pipeline.callkit import Call, FakeLLM, silence, speech


class ToolLLM(FakeLLM):
    """First answer: a few words and a call of `tool`; once the result is back: the reply."""

    def __init__(self, tool: str = "show_photo", always: bool = False) -> None:
        super().__init__("Here it is.")
        self.tool, self.always = tool, always

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        self.histories.append(list(history))
        if self.always or history[-1].role != "tool":
            yield TextDelta("Let me look. ")
            yield ToolCall(f"call_{len(self.histories)}", self.tool, {"words": "wedding"})
            return
        yield TextDelta(self.reply)


class Recorder:
    """A `ToolRunner` that records each call (the companion's real runner is tested in tests/server)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, arguments))
        return {"ok": True, "shown": True}


def with_tools(call: Call, llm: FakeLLM) -> Recorder:
    call.engines.llm = llm
    runner = Recorder()
    call.conv.core.tools = runner
    call.conv.context = ChatContext("be kind", "en", tools=TOOL_SPECS)
    return runner


async def test_tool_result_goes_back_then_the_answer_is_spoken() -> None:
    """Words before the call are spoken, the tool runs once, its result is sent back, the answer follows."""
    call = Call()
    llm = ToolLLM()
    runner = with_tools(call, llm)
    call.conv.add_text("user", "Show me the wedding photo.")
    call.conv.create_response()
    await call.until(ResponseDone)
    await call.close()
    assert runner.calls == [("show_photo", {"words": "wedding"})]
    second = llm.histories[1]
    assert second[-2].role == "assistant" and second[-2].tool_calls[0].name == "show_photo"
    assert second[-2].text == "Let me look. "
    assert second[-1].role == "tool" and second[-1].tool_result is not None
    assert second[-1].tool_result.result == {"ok": True, "shown": True}
    assert call.engines.tts.spoken == ["Let me look.", "Here it is."]
    [done] = call.of(ResponseDone)
    assert done.status == "completed" and done.text == "Let me look. Here it is."
    assert 0 <= done.timings["tools_done_ms"] <= done.timings["first_audio_sent_ms"] + 1000


async def test_a_speculative_reply_shows_nothing_until_the_turn_is_over() -> None:
    """A speculation discarded because the caller went on runs no tool with effects; the real reply does."""
    call = Call()
    runner = with_tools(call, ToolLLM())
    await call.feed(speech(900))
    await call.feed(silence(300))  # a pause: the speculative reply asks for show_photo
    spec = call.conv.floor.spec
    assert spec is not None
    await call.settle(200)
    assert runner.calls == []
    await call.feed(speech(600))  # the caller goes on: the speculation is dropped
    await call.feed(silence(1200))
    await call.until(ResponseDone)
    await call.close()
    assert runner.calls == [("show_photo", {"words": "wedding"})]


async def test_a_model_that_keeps_calling_tools_still_ends() -> None:
    """After MAX_TOOL_ROUNDS rounds of calls the reply ends with what was said."""
    call = Call()
    llm = ToolLLM(always=True)
    runner = with_tools(call, llm)
    call.conv.add_text("user", "Show me everything.")
    call.conv.create_response()
    await call.until(ResponseDone)
    await call.close()
    assert len(runner.calls) == MAX_TOOL_ROUNDS and len(llm.histories) == MAX_TOOL_ROUNDS + 1
    assert call.of(ResponseDone)[0].status == "completed"


async def test_emergency_words_get_the_calm_reply_whatever_the_model() -> None:
    """With an emergency number set, "I've fallen and can't get up" is answered without the model."""
    call = Call(emergency_number="119")
    call.conv.add_text("user", "Help! I've fallen and I can't get up.")
    call.conv.create_response()
    await call.until(ResponseDone)
    call.conv.add_text("user", "I fell in love in 1962.")
    call.conv.create_response()
    await call.until(ResponseDone, n=2)
    await call.close()
    first, second = call.of(ResponseDone)
    assert "119" in first.text and "family" in first.text
    assert len(call.engines.llm.histories) == 1  # only the second turn went to the model
    assert second.text == call.engines.llm.reply
