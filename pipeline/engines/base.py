"""The engine protocols. An implementation supplies one or two methods; everything streams.

Audio is mono int16 numpy arrays at the engine's own `sample_rate`; the core resamples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


# --- speech to text ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript:
    """The result of one decode of an utterance's audio."""

    text: str
    language: str
    #: Words with start/end seconds when the engine gives them (LocalAgreement needs them).
    words: tuple[tuple[str, float, float], ...] = ()
    #: Average log-probability and no-speech probability, for hallucination filtering.
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    #: The decoder's own probability of how the text ends: the least of its last word's tokens and
    #: of the closing mark it wrote (None when the engine does not say). Low means it guessed at
    #: the last sound ("remind me to" heard as "remind me too?"), so the words cannot be trusted
    #: to say the sentence is over (`pipeline.turn_end`).
    end_prob: float | None = None
    #: Other words the decoder weighed for the last one, each as the whole text would then read,
    #: with the probability it gave that word (most likely first; empty when the engine does not
    #: say). "Yesterday I went to the" behind "Yesterday I went to them." (p 0.22) shows a pause
    #: the words alone would call finished may be mid-sentence (`pipeline.turn_end`).
    end_alternatives: tuple[tuple[str, float], ...] = ()


#: Which decode a `SpeechToText.transcribe` call serves: "partial" or "final" (set by
#: `pipeline.stt_stream`). A remote engine sends partials at low priority and may decline them;
#: Whisper skips measuring a partial's `end_prob`.
DECODE_KIND: ContextVar[str] = ContextVar("silvertalk_decode_kind", default="final")


@runtime_checkable
class SpeechToText(Protocol):
    """Batch decoder of one utterance. Streaming (partials, speculative finals) is built on top."""

    sample_rate: int

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        """Decode `audio` (mono int16 at `sample_rate`). Runs off the event loop. Raises EngineError."""
        ...


# --- language model ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One entry of the conversation history sent to the LLM."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    #: For role "assistant": tool calls it made; for role "tool": the call this answers.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_result: ToolResult | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: JSON-schema parameters (OpenAPI subset)."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    result: dict[str, Any]
    #: A client tool's output as the client sent it (free text, often JSON): engines that take text
    #: send it as is, the others send `result` (the text's JSON object, or {"output": text}).
    output: str | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether the model must call a tool in this turn: `required` (any offered), `name` (that one)."""

    required: bool = False
    name: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one LLM call used, as its API reports them; yielded once, at the end of a stream.

    An engine that is told nothing by its API yields none (the reply then reports 0: no guesses).
    """

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


LLMOutput = TextDelta | ToolCall | Usage


@dataclass(frozen=True, slots=True)
class ChatContext:
    """What the LLM needs besides history: who it talks to, in what language, what it may call."""

    system_prompt: str
    language: str = "ko"
    user_name: str = ""
    tools: Sequence[ToolSpec] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    #: The caller's own data for engines that answer from it (today's events, memories).
    facts: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LanguageModel(Protocol):
    def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        """Yield text deltas and tool calls as they arrive, then the `Usage` when the API reports it.
        Raises RetryableEngineError/FatalEngineError."""
        ...


# --- text to speech ----------------------------------------------------------------------------


@runtime_checkable
class TextToSpeech(Protocol):
    sample_rate: int

    def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        """Yield audio chunks for one sentence as soon as each is ready. Blocking work runs off the loop."""
        ...


# --- end of turn -------------------------------------------------------------------------------


@runtime_checkable
class EndOfTurnModel(Protocol):
    """Judges from the sound of the last few seconds whether the speaker has finished their turn."""

    sample_rate: int

    async def probability(self, audio: PCM) -> float:
        """P(turn complete) for mono int16 `audio` at `sample_rate` ending now. Runs off the event loop."""
        ...
