"""OpenAI-compatible chat completions (Ollama, vLLM, llama.cpp server), streamed over SSE.

`POST {base_url}/chat/completions` with `stream: true` (and `stream_options.include_usage`, so the
token counts arrive in a last chunk and are yielded as `Usage`) and a Bearer key when one is set. Text
arrives in `choices[0].delta.content`; tool calls arrive in pieces in `delta.tool_calls` (by
index: id and name first, the JSON arguments in fragments) and are yielded whole once the choice
finishes. Errors are sorted here as for Gemini: 408/429/5xx, timeouts, lost connections, errors
mid-stream and content filtering are retryable; other 4xx are fatal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from pipeline import FatalEngineError, RetryableEngineError
from pipeline.engines.base import ChatContext, LLMOutput, Message, TextDelta, ToolCall, Usage


def to_messages(history: Sequence[Message], context: ChatContext) -> list[dict[str, Any]]:
    """The history in chat-completions form, the system prompt first."""
    messages: list[dict[str, Any]] = []
    if context.system_prompt:
        messages.append({"role": "system", "content": context.system_prompt})
    for m in history:
        if m.role == "tool":
            if m.tool_result is not None:
                r = m.tool_result
                content = r.output if r.output is not None else json.dumps(r.result, ensure_ascii=False)
                messages.append({"role": "tool", "tool_call_id": r.call_id, "content": content})
            continue
        msg: dict[str, Any] = {"role": m.role, "content": m.text}
        if m.tool_calls:
            msg["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
                }
                for c in m.tool_calls
            ]
        messages.append(msg)
    return messages


class OpenAICompatLLM:
    """A `LanguageModel` over any server that speaks OpenAI's streaming chat completions."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 20.0,
        temperature: float = 0.7,
        max_tokens: int = 400,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._temperature = temperature
        self._max_tokens = max_tokens

    async def aclose(self) -> None:
        await self._client.aclose()

    def _body(self, history: Sequence[Message], context: ChatContext) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": to_messages(history, context),
            "stream": True,
            # The token counts come in one last chunk (no choices) when asked for.
            "stream_options": {"include_usage": True},
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
        }
        if context.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters or {"type": "object", "properties": {}},
                    },
                }
                for t in context.tools
            ]
            choice = context.tool_choice
            if choice.name:
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            elif choice.required:
                body["tool_choice"] = "required"
        return body

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        """Yield TextDelta per content delta and ToolCall per completed tool call.

        Raises RetryableEngineError (408/429/5xx, timeout, connection, error mid-stream, a stream
        cut off with no finish, content filter, malformed tool arguments) or FatalEngineError (other 4xx).
        """
        try:
            async with self._client.stream("POST", self.url, json=self._body(history, context)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response.status_code, response.text)
                pending: dict[int, dict[str, Any]] = {}
                finished = False
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    chunk = json.loads(data)
                    for out in _outputs(chunk, pending):
                        yield out
                    finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                if not finished:
                    # A stream that just stops (no finish_reason, no [DONE]) was cut off mid-answer.
                    raise RetryableEngineError("chat completions stream ended before the answer was finished")
                for out in _finish_calls(pending):
                    yield out
        except httpx.TimeoutException as e:
            raise RetryableEngineError(f"chat completions timed out: {e!r}") from e
        except httpx.TransportError as e:
            raise RetryableEngineError(f"chat completions connection failed: {e!r}") from e
        except json.JSONDecodeError as e:
            raise RetryableEngineError(f"chat completions sent malformed data: {e}") from e


def _status_error(status: int, text: str) -> RetryableEngineError | FatalEngineError:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:200]
    if status in (408, 429) or status >= 500:
        return RetryableEngineError(f"chat completions {status}: {message}")
    return FatalEngineError(f"chat completions {status}: {message}")


def _outputs(chunk: dict[str, Any], pending: dict[int, dict[str, Any]]) -> list[LLMOutput]:
    if "error" in chunk:
        err = chunk["error"]
        raise RetryableEngineError(f"chat completions error mid-stream: {err.get('message', err)}")
    outputs: list[LLMOutput] = []
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        outputs.append(Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)))
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content"):
            outputs.append(TextDelta(delta["content"]))
        for piece in delta.get("tool_calls") or ():
            call = pending.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": ""})
            call["id"] = piece.get("id") or call["id"]
            fn = piece.get("function") or {}
            call["name"] += fn.get("name") or ""
            call["arguments"] += fn.get("arguments") or ""
        reason = choice.get("finish_reason")
        if reason == "content_filter":
            raise RetryableEngineError("chat completions stopped early: content_filter")
        if reason:
            outputs += _finish_calls(pending)
    return outputs


def _finish_calls(pending: dict[int, dict[str, Any]]) -> list[LLMOutput]:
    calls: list[LLMOutput] = []
    for index in sorted(pending):
        call = pending[index]
        try:
            args = json.loads(call["arguments"]) if call["arguments"].strip() else {}
        except json.JSONDecodeError as e:
            raise RetryableEngineError(f"tool call {call['name']!r} had malformed arguments") from e
        # A server that sends no id gets one of ours: unique, as a client's output answers it by id.
        call_id = call["id"] or f"call_{uuid.uuid4().hex[:16]}"
        calls.append(ToolCall(id=call_id, name=call["name"], arguments=args))
    pending.clear()
    return calls


def load(settings: Any) -> OpenAICompatLLM:
    """Factory for the registry."""
    if not settings.openai_compat_base_url:
        from pipeline import EngineUnavailable

        raise EngineUnavailable(
            "llm_engine=openai_compat needs SILVERTALK_OPENAI_COMPAT_BASE_URL "
            "(e.g. http://127.0.0.1:11434/v1 for Ollama)"
        )
    return OpenAICompatLLM(
        base_url=settings.openai_compat_base_url,
        model=settings.openai_compat_model,
        api_key=settings.openai_compat_api_key,
        timeout_s=settings.llm_timeout_s,
    )
