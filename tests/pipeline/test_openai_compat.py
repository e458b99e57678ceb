"""The OpenAI-compatible chat engine (Ollama, vLLM, llama.cpp) against a local fake server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline import FatalEngineError, RetryableEngineError
from pipeline.engines.base import (
    ChatContext,
    LLMOutput,
    Message,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    Usage,
)
from pipeline.engines.openai_compat import OpenAICompatLLM, _finish_calls
from pipeline.tools import client_result
from tests.fakes.openai_chat import FakeChat, Reply

CTX = ChatContext(system_prompt="Be kind.", language="en")
ALARM = ToolSpec("set_alarm", "Set an alarm", {"type": "object", "properties": {"time": {"type": "string"}}})


@pytest.fixture
def fake() -> Iterator[FakeChat]:
    with FakeChat(reply="Hello Mary, how are you today?", ttft_s=0.02) as f:
        yield f


def engine(fake: FakeChat, **kw: object) -> OpenAICompatLLM:
    args: dict[str, object] = {"base_url": fake.url, "model": "llama3.1", "api_key": fake.api_key}
    args.update(kw)
    return OpenAICompatLLM(**args)  # type: ignore[arg-type]


async def collect(llm: OpenAICompatLLM, history: list[Message], ctx: ChatContext = CTX) -> list[LLMOutput]:
    try:
        return [o async for o in llm.stream(history, ctx)]
    finally:
        await llm.aclose()


async def test_text_streams_with_system_prompt_and_history(fake: FakeChat) -> None:
    """Deltas join to the reply, then the usage chunk's counts; the request carries the system prompt,
    history, model, stream flag and include_usage."""
    history = [Message("user", "hi"), Message("assistant", "Hello!"), Message("user", "how are you?")]
    out = await collect(engine(fake), history)
    assert len(out) == 4 and out[-1] == Usage(input_tokens=20, output_tokens=10)
    assert fake.requests[-1].body["stream_options"] == {"include_usage": True}
    assert "".join(o.text for o in out if isinstance(o, TextDelta)) == "Hello Mary, how are you today?"
    req = fake.requests[-1]
    assert req.headers["authorization"] == f"Bearer {fake.api_key}"
    assert req.body["model"] == "llama3.1" and req.body["stream"] is True
    assert [(m["role"], m["content"]) for m in req.body["messages"]] == [
        ("system", "Be kind."), ("user", "hi"), ("assistant", "Hello!"), ("user", "how are you?"),
    ]  # fmt: skip


async def test_tool_call_fragments_are_joined(fake: FakeChat) -> None:
    """Tool-call arguments streamed in fragments make one ToolCall; its result goes back as a tool message."""
    fake.script(Reply.call("set_alarm", time="07:30"), "Done, I set it.")
    ctx = ChatContext(system_prompt="", tools=[ALARM])
    out = await collect(engine(fake), [Message("user", "wake me at 7:30")], ctx)
    calls = [o for o in out if isinstance(o, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("set_alarm", {"time": "07:30"})]
    assert fake.requests[0].body["tools"][0]["function"]["name"] == "set_alarm"
    history = [
        Message("user", "wake me at 7:30"),
        Message("assistant", tool_calls=(calls[0],)),
        Message("tool", tool_result=ToolResult(calls[0].id, "set_alarm", {"ok": True})),
    ]
    await collect(engine(fake), history, ctx)
    messages = fake.requests[1].body["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "set_alarm", "arguments": '{"time": "07:30"}'}
    assert messages[2] == {"role": "tool", "tool_call_id": calls[0].id, "content": '{"ok": true}'}


async def test_a_client_tools_output_goes_back_as_its_text_and_a_call_can_be_required(fake: FakeChat) -> None:
    """A client tool's output is the tool message's content as sent; a required call (one named, or
    any) is the request's tool_choice; a server's call without an id gets a unique one."""
    call = ToolCall("call_1", "set_alarm", {"time": "07:30"})
    output = client_result(call, "Alarm set for 07:30.")
    history = [
        Message("user", "wake me at 7:30"),
        Message("assistant", tool_calls=(call,)),
        Message("tool", tool_result=output),
    ]
    await collect(
        engine(fake), history, ChatContext("", tools=[ALARM], tool_choice=ToolChoice(True, "set_alarm"))
    )
    body = fake.requests[0].body
    assert body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "Alarm set for 07:30.",
    }
    assert body["tool_choice"] == {"type": "function", "function": {"name": "set_alarm"}}
    await collect(
        engine(fake), history, ChatContext("", tools=[ALARM], tool_choice=ToolChoice(required=True))
    )
    assert fake.requests[1].body["tool_choice"] == "required"
    await collect(engine(fake), history, ChatContext("", tools=[ALARM]))
    assert "tool_choice" not in fake.requests[2].body
    pending = {0: {"id": "", "name": "set_alarm", "arguments": ""}}
    first = _finish_calls(dict(pending))[0]
    second = _finish_calls(dict(pending))[0]
    assert isinstance(first, ToolCall) and isinstance(second, ToolCall) and first.id != second.id


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(429), RetryableEngineError),
        (Reply.error(503), RetryableEngineError),
        (Reply.mid_stream_error(), RetryableEngineError),
        (Reply.safety("I"), RetryableEngineError),
        (Reply.error(400), FatalEngineError),
        (Reply.cut_off(), RetryableEngineError),
        (Reply.dropped(), RetryableEngineError),
    ],
    ids=["429", "503", "mid-stream", "content-filter", "400", "stops-mid-sentence", "connection-lost"],
)
async def test_failures_are_sorted(fake: FakeChat, reply: Reply, error: type[Exception]) -> None:
    """Each upstream failure surfaces as the right engine error class."""
    fake.script(reply)
    with pytest.raises(error):
        await collect(engine(fake), [Message("user", "hi")])


async def test_bad_key_is_fatal_and_hang_times_out(fake: FakeChat) -> None:
    """A wrong key is fatal; a server that never answers is a retryable timeout."""
    with pytest.raises(FatalEngineError, match="401"):
        await collect(engine(fake, api_key="nope"), [Message("user", "hi")])
    fake.script(Reply.hanging())
    with pytest.raises(RetryableEngineError, match="timed out"):
        await collect(engine(fake, timeout_s=0.3), [Message("user", "hi")])


async def test_no_key_sends_no_authorization() -> None:
    """Without a key (Ollama) no Authorization header is sent."""
    with FakeChat(api_key=None, ttft_s=0) as fake:
        await collect(engine(fake, api_key=None), [Message("user", "hi")])
        assert "authorization" not in fake.requests[-1].headers
