"""The offline companion uses the tools like a model: a call first, then an answer from the result."""

from __future__ import annotations

from typing import Any

from pipeline.engines.base import ChatContext, LLMOutput, Message, TextDelta, ToolCall, ToolResult
from pipeline.engines.offline import OfflineLLM
from pipeline.tools import TOOL_SPECS

KO = ChatContext(system_prompt="", language="ko", tools=TOOL_SPECS)
EN = ChatContext(system_prompt="", language="en", tools=TOOL_SPECS)


async def outputs(history: list[Message], ctx: ChatContext) -> list[LLMOutput]:
    return [o async for o in OfflineLLM().stream(history, ctx)]


async def answer(question: str, call: ToolCall, result: dict[str, Any], ctx: ChatContext) -> str:
    history = [
        Message("user", question),
        Message("assistant", tool_calls=(call,)),
        Message("tool", tool_result=ToolResult(call.id, call.name, result)),
    ]
    return "".join(o.text for o in await outputs(history, ctx) if isinstance(o, TextDelta))


async def test_whats_on_today_calls_list_events_then_reads_them() -> None:
    """ "오늘 일정" makes one list_events call; the events in its result are read out."""
    [call] = await outputs([Message("user", "오늘 일정이 뭐예요?")], KO)
    assert isinstance(call, ToolCall) and call.name == "list_events" and call.arguments == {}
    events = [{"title": "병원", "date": "2026-11-27", "time": "15:00"}]
    said = await answer("오늘 일정이 뭐예요?", call, {"ok": True, "events": events}, KO)
    assert said == "오늘은 오후 3시에 병원 일정이 있어요."


async def test_a_memory_question_calls_find_memories_with_the_callers_words() -> None:
    """ "Tell me about the wedding" searches with those words and answers from the best match, or honestly."""
    [call] = await outputs([Message("user", "Do you remember our wedding?")], EN)
    assert isinstance(call, ToolCall) and call.name == "find_memories"
    assert call.arguments == {"words": "Do you remember our wedding?"}
    found = {"ok": True, "memories": [{"title": "our wedding", "body": "We married in Busan. It rained.",
                                       "happened_on": "1970", "place": "Busan"}]}  # fmt: skip
    said = await answer("Do you remember our wedding?", call, found, EN)
    assert said.startswith("I found your memory of our wedding in 1970 at Busan. We married in Busan.")
    nothing = await answer("Do you remember our wedding?", call, {"ok": True, "memories": []}, EN)
    assert "couldn't find" in nothing


async def test_without_tools_it_answers_from_facts_and_is_honest_about_what_it_cannot_do() -> None:
    """No tools offered: no call (the facts answer); asked to set a reminder, it says it cannot."""
    plain = ChatContext(
        system_prompt="", language="ko", facts={"today_events": [{"title": "병원", "time": "15:00"}]}
    )
    outs = await outputs([Message("user", "오늘 일정 알려 주세요")], plain)
    assert not any(isinstance(o, ToolCall) for o in outs)
    assert "오후 3시에 병원" in "".join(o.text for o in outs if isinstance(o, TextDelta))
    said = "".join(
        o.text
        for o in await outputs([Message("user", "내일 아침에 깨워 줘요")], KO)
        if isinstance(o, TextDelta)
    )
    assert "해 드릴 수 없어요" in said
