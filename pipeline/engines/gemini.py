"""Gemini through google-genai: streaming generation with function calling.

History becomes `contents` (user/model roles; tool calls as functionCall parts, results as
functionResponse parts), the system prompt becomes `systemInstruction`, tools become
functionDeclarations (a required call: `toolConfig` mode ANY), and the SDK's automatic function
calling is off: the conversation core runs tools itself. Errors are sorted at this edge: rate
limits, server errors, timeouts, dropped connections and safety stops are `RetryableEngineError`
(the caller hears an apology and the call goes on); bad requests, keys and permissions are
`FatalEngineError`.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pipeline import EngineUnavailable, FatalEngineError, RetryableEngineError
from pipeline.engines.base import ChatContext, LLMOutput, Message, TextDelta, ToolCall, Usage

log = logging.getLogger(__name__)

#: Finish reasons that end a reply early for a reason the caller should hear an apology for.
_BAD_FINISH = {
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "OTHER", "LANGUAGE",
    "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE",
    "MODEL_ARMOR",
}  # fmt: skip


def _http_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(timeouts, transport failures) of the HTTP clients google-genai may use: httpx, its fork
    httpx2 (google-genai 3.x prefers it), or aiohttp (used for async calls whenever it is
    installed, which another package may do; a connection lost mid-stream raises its
    ClientPayloadError), whichever raises."""
    timeouts: list[type[BaseException]] = [TimeoutError]
    transports: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    try:
        aiohttp = importlib.import_module("aiohttp")
    except ImportError:
        pass
    else:
        transports.append(aiohttp.ClientError)  # its timeouts are TimeoutErrors as well
    return tuple(timeouts), tuple(transports)


_TIMEOUTS, _TRANSPORT_ERRORS = _http_errors()


class GeminiLLM:
    """A `LanguageModel` over `client.aio.models.generate_content_stream`."""

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout_s: float = 20.0,
        temperature: float = 0.7,
        max_output_tokens: int = 400,
        thinking_budget: int | None = 0,
    ) -> None:
        """Build the client (no network yet). `thinking_budget=0` turns 2.5-flash thinking off:
        it costs seconds before the first word, and a spoken companion needs the first word fast."""
        try:
            from google import genai
            from google.genai import types
        except ImportError as e:
            raise EngineUnavailable("google-genai is not installed: pip install -e .") from e
        self._types = types
        self.model = model
        http_options = types.HttpOptions(
            base_url=base_url, api_version=api_version, timeout=int(timeout_s * 1000)
        )
        # A local server (the fake, a proxy) may take no key; the SDK insists on one.
        self._client = genai.Client(vertexai=False, api_key=api_key or "no-key", http_options=http_options)
        self._temperature = temperature
        self._max_output_tokens = max_output_tokens
        self._thinking_budget = thinking_budget

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    def _config(self, context: ChatContext) -> Any:
        types = self._types
        tools = tool_config = None
        if context.tools:
            # The JSON schema as given (parametersJsonSchema): a client's own tools may use any of
            # JSON Schema, which Gemini's OpenAPI-subset `Schema` would refuse.
            tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=t.name,
                            description=t.description,
                            parameters_json_schema=t.parameters or None,
                        )
                        for t in context.tools
                    ]
                )
            ]
            choice = context.tool_choice
            if choice.required:
                tool_config = types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(
                        mode=types.FunctionCallingConfigMode.ANY,
                        allowed_function_names=[choice.name] if choice.name else None,
                    )
                )
        thinking = None
        if self._thinking_budget is not None:
            thinking = types.ThinkingConfig(thinking_budget=self._thinking_budget)
        return types.GenerateContentConfig(
            system_instruction=context.system_prompt or None,
            temperature=self._temperature,
            max_output_tokens=self._max_output_tokens,
            tools=tools,
            tool_config=tool_config,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            thinking_config=thinking,
        )

    def _contents(self, history: Sequence[Message]) -> list[Any]:
        types = self._types
        contents: list[Any] = []
        for m in history:
            parts: list[Any] = []
            if m.role == "tool":
                if m.tool_result is None:
                    continue
                role = "user"
                r = m.tool_result
                parts.append(
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=None if r.call_id.startswith("local-") else r.call_id,
                            name=r.name,
                            response=r.result,
                        )
                    )
                )
            else:
                role = "model" if m.role == "assistant" else "user"
                if m.text:
                    parts.append(types.Part(text=m.text))
                parts += [
                    types.Part(
                        function_call=types.FunctionCall(
                            id=None if c.id.startswith("local-") else c.id, name=c.name, args=c.arguments
                        )
                    )
                    for c in m.tool_calls
                ]
            if not parts:
                continue
            # Gemini wants alternating turns: parallel tool results go in one user turn.
            if contents and contents[-1].role == role:
                contents[-1].parts.extend(parts)
            else:
                contents.append(types.Content(role=role, parts=parts))
        return contents

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        """Yield TextDelta per chunk of text and ToolCall per functionCall part, as they arrive,
        then the `Usage` of the call (from usageMetadata) when Gemini sent it.

        Raises RetryableEngineError (429, 5xx, timeout, connection lost, a stream that ends with no
        finish reason, safety and other early stops) or FatalEngineError (400/401/403/404: key,
        model or request wrong).
        """
        from google.genai import errors

        try:
            response = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=self._contents(history), config=self._config(context)
            )
            usage, finished = None, False
            async for chunk in response:
                for out in self._outputs(chunk):
                    yield out
                usage = getattr(chunk, "usage_metadata", None) or usage
                finished = finished or any(c.finish_reason for c in chunk.candidates or ())
            if not finished:
                # Every real answer ends with a finish reason; a stream that just stops was cut off
                # (a proxy, an overloaded backend) and its last words are half a sentence.
                raise RetryableEngineError("Gemini's stream ended before the answer was finished")
            if usage is not None:  # the counts so far ride on each chunk; the last one's are the total
                yield Usage(usage.prompt_token_count or 0, usage.candidates_token_count or 0)
        except errors.APIError as e:
            code = getattr(e, "code", None) or 0
            if code in (408, 429) or code >= 500:
                raise RetryableEngineError(f"Gemini {code}: {e.message or e.status}") from e
            raise FatalEngineError(f"Gemini {code}: {e.message or e.status}") from e
        except _TIMEOUTS as e:
            raise RetryableEngineError(f"Gemini timed out: {e!r}") from e
        except _TRANSPORT_ERRORS as e:
            raise RetryableEngineError(f"Gemini connection failed: {e!r}") from e

    def _outputs(self, chunk: Any) -> list[LLMOutput]:
        feedback = getattr(chunk, "prompt_feedback", None)
        if feedback is not None and feedback.block_reason:
            raise RetryableEngineError(f"Gemini blocked the prompt: {feedback.block_reason}")
        outputs: list[LLMOutput] = []
        for candidate in chunk.candidates or ():
            content = candidate.content
            for part in content.parts if content and content.parts else ():
                if part.thought:
                    continue
                if part.text:
                    outputs.append(TextDelta(part.text))
                if part.function_call:
                    fc = part.function_call
                    outputs.append(
                        ToolCall(
                            # The Gemini API often sends no call id; ours are marked "local-" so
                            # they are not sent back as if Gemini had issued them.
                            id=fc.id or f"local-{uuid.uuid4().hex[:12]}",
                            name=fc.name or "",
                            arguments=dict(fc.args or {}),
                        )
                    )
            reason = candidate.finish_reason
            name = getattr(reason, "value", reason)
            if name in _BAD_FINISH:
                # Text already yielded stays heard; the core apologises for the rest.
                raise RetryableEngineError(f"Gemini stopped early: finishReason {name}")
        return outputs


def load(settings: Any) -> GeminiLLM:
    """Factory for the registry."""
    return GeminiLLM(
        api_key=settings.gemini_api_key,
        model=settings.gemini_model,
        base_url=settings.gemini_base_url,
        api_version=settings.gemini_api_version,
        timeout_s=settings.llm_timeout_s,
        thinking_budget=settings.gemini_thinking_budget,
    )
