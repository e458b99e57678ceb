"""The Gemini engine driven through the real google-genai client against the local fake server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

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
from pipeline.engines.gemini import GeminiLLM
from pipeline.prompts import system_prompt
from pipeline.tools import client_result
from tests.fakes.gemini import FakeGemini, Reply

WEATHER = ToolSpec(
    name="get_weather",
    description="Today's weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(reply="안녕하세요 영희 님, 오늘 기분은 어떠세요?", ttft_s=0.05) as f:
        yield f


def engine(fake: FakeGemini, **kw: object) -> GeminiLLM:
    args: dict[str, object] = {"api_key": fake.api_key, "model": "gemini-2.5-flash", "base_url": fake.url}
    args.update(kw)
    return GeminiLLM(**args)  # type: ignore[arg-type]


async def collect(llm: GeminiLLM, history: list[Message], context: ChatContext) -> list[LLMOutput]:
    return [out async for out in llm.stream(history, context)]


CTX = ChatContext(system_prompt=system_prompt("ko", "영희"), language="ko", user_name="영희")


async def test_text_streams_in_chunks(fake: FakeGemini) -> None:
    """The reply arrives as several text deltas that join to the full answer, then usageMetadata's counts."""
    out = await collect(engine(fake), [Message("user", "안녕하세요")], CTX)
    assert len(out) == 4 and all(isinstance(o, TextDelta) for o in out[:3])
    assert out[-1] == Usage(input_tokens=20, output_tokens=10)
    assert (
        "".join(o.text for o in out if isinstance(o, TextDelta))
        == "안녕하세요 영희 님, 오늘 기분은 어떠세요?"
    )


async def test_history_and_system_prompt_are_sent(fake: FakeGemini) -> None:
    """Every turn sends the whole history with user/model roles and the system instruction."""
    history = [Message("user", "안녕"), Message("assistant", "안녕하세요!"), Message("user", "오늘 뭐 해요?")]
    await collect(engine(fake), history, CTX)
    req = fake.requests[-1]
    assert req.path == f"/{req.api_version}/models/gemini-2.5-flash:streamGenerateContent"
    assert req.headers["x-goog-api-key"] == fake.api_key
    body = req.body
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "안녕"), ("model", "안녕하세요!"), ("user", "오늘 뭐 해요?"),
    ]  # fmt: skip
    assert "존댓말" in body["systemInstruction"]["parts"][0]["text"]
    assert "영희" in body["systemInstruction"]["parts"][0]["text"]
    # google-genai 3.6 writes this one field in snake case; proto3 JSON accepts both spellings.
    thinking = body["generationConfig"]["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    assert "tools" not in body


async def test_api_version_is_configurable(fake: FakeGemini) -> None:
    """api_version picks the path prefix the client calls."""
    await collect(engine(fake, api_version="v1beta"), [Message("user", "hi")], CTX)
    assert fake.requests[-1].api_version == "v1beta"


async def test_function_call_out_and_result_back(fake: FakeGemini) -> None:
    """Declarations go out, functionCall comes back as ToolCall, the result goes back as functionResponse."""
    fake.script(Reply.call("get_weather", city="Seoul"), Reply(text="서울은 맑아요."))
    ctx = ChatContext(system_prompt="be kind", tools=[WEATHER])
    llm = engine(fake)
    out = await collect(llm, [Message("user", "날씨 어때요?")], ctx)
    calls = [o for o in out if isinstance(o, ToolCall)]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Seoul"})]
    decl = fake.requests[0].body["tools"][0]["functionDeclarations"][0]
    # The JSON schema as given (a client's tools may use any of JSON Schema); google-genai 3.6
    # writes this field in snake case, which proto3 JSON accepts as well.
    schema = decl.get("parametersJsonSchema", decl.get("parameters_json_schema"))
    assert decl["name"] == "get_weather" and schema == WEATHER.parameters
    assert "toolConfig" not in fake.requests[0].body  # the model decides
    history = [
        Message("user", "날씨 어때요?"),
        Message("assistant", tool_calls=(calls[0],)),
        Message("tool", tool_result=ToolResult(calls[0].id, "get_weather", {"sky": "clear"})),
    ]
    out = await collect(llm, history, ctx)
    assert "".join(o.text for o in out if isinstance(o, TextDelta)) == "서울은 맑아요."
    contents = fake.requests[1].body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Seoul"}}}],
    }
    assert contents[2]["role"] == "user"
    assert contents[2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"sky": "clear"},
    }


async def test_a_required_call_is_mode_any_and_a_plain_output_is_wrapped(fake: FakeGemini) -> None:
    """A required call (of one function, or of any) is toolConfig mode ANY; a client's plain-text
    output goes back as {"output": text}, a JSON object as that object."""
    seoul = ToolCall("local-1", "get_weather", {"city": "Seoul"})
    busan = ToolCall("local-2", "get_weather", {"city": "Busan"})
    history = [
        Message("user", "날씨 어때요?"),
        Message("assistant", tool_calls=(seoul, busan)),
        Message("tool", tool_result=client_result(seoul, "맑음")),
        Message("tool", tool_result=client_result(busan, '{"sky": "clear"}')),
    ]
    llm = engine(fake)
    await collect(llm, history, ChatContext("", tools=[WEATHER], tool_choice=ToolChoice(True, "get_weather")))
    await collect(llm, history, ChatContext("", tools=[WEATHER], tool_choice=ToolChoice(required=True)))
    named, any_ = (r.body["toolConfig"] for r in fake.requests)

    def config(body: dict[str, Any]) -> dict[str, Any]:  # proto3 JSON: either spelling
        return dict(body.get("functionCallingConfig") or body["function_calling_config"])

    names = config(named).get("allowedFunctionNames", config(named).get("allowed_function_names"))
    assert config(named)["mode"] == "ANY" and names == ["get_weather"]
    assert config(any_)["mode"] == "ANY" and not config(any_).get("allowedFunctionNames")
    responses = [p["functionResponse"]["response"] for p in fake.requests[0].body["contents"][-1]["parts"]]
    assert responses == [{"output": "맑음"}, {"sky": "clear"}]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply.error(429), RetryableEngineError),
        (Reply.error(500), RetryableEngineError),
        (Reply.error(503), RetryableEngineError),
        (Reply.mid_stream_error(), RetryableEngineError),
        (Reply.safety("I can"), RetryableEngineError),
        (Reply.error(400), FatalEngineError),
        (Reply.error(403), FatalEngineError),
    ],
    ids=["429", "500", "503", "mid-stream", "safety", "400", "403"],
)
async def test_failures_are_sorted_at_the_edge(
    fake: FakeGemini, reply: Reply, error: type[Exception]
) -> None:
    """Each upstream failure surfaces as the right engine error class, chained to the SDK's."""
    fake.script(reply)
    with pytest.raises(error) as info:
        await collect(engine(fake), [Message("user", "hi")], CTX)
    assert info.value.__cause__ is not None or "finishReason" in str(info.value)


async def test_wrong_key_is_fatal(fake: FakeGemini) -> None:
    """A wrong API key is a fatal error, not something to retry."""
    with pytest.raises(FatalEngineError, match="400"):
        await collect(engine(fake, api_key="wrong"), [Message("user", "hi")], CTX)


async def test_hang_times_out_as_retryable(fake: FakeGemini) -> None:
    """A server that never answers trips the client timeout, which is retryable."""
    fake.script(Reply.hanging())
    t0 = time.monotonic()
    with pytest.raises(RetryableEngineError, match="timed out"):
        await collect(engine(fake, timeout_s=0.5), [Message("user", "hi")], CTX)
    assert time.monotonic() - t0 < 5


async def test_time_to_first_token_is_the_fakes() -> None:
    """The fake's configured time to first token is what the engine observes (for benchmarks)."""
    with FakeGemini(reply="Hello there.", ttft_s=0.3) as fake:
        llm = engine(fake)
        await collect(llm, [Message("user", "warm up")], CTX)
        t0 = time.monotonic()
        async for _ in llm.stream([Message("user", "hi")], CTX):
            break
        assert 0.3 <= time.monotonic() - t0 < 0.8


async def test_unreachable_server_is_retryable() -> None:
    """A closed port (Gemini unreachable) is a retryable failure."""
    with FakeGemini() as fake:
        url, key = fake.url, fake.api_key
    llm = GeminiLLM(api_key=key, model="gemini-2.5-flash", base_url=url, timeout_s=2)
    with pytest.raises(RetryableEngineError, match="connection"):
        await collect(llm, [Message("user", "hi")], CTX)
