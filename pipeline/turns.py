"""The conversation's data: call configuration, items (turns), and what makes a turn look finished.

Kept apart from `pipeline.conversation` so the turn-taking logic there reads on its own.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.engines.base import LanguageModel, Message, SpeechToText, TextToSpeech

if TYPE_CHECKING:
    from pipeline.reply import Reply

#: Whisper ends a finished sentence with one of these; a turn cut mid-sentence ends with "," or a word.
SENTENCE_END = (".", "?", "!", "\u2026", "\u3002", "\uff1f", "\uff01")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class CallEngines(Protocol):
    """What a call needs of the engines (`pipeline.engines.registry.Engines` is one)."""

    @property
    def stt(self) -> SpeechToText: ...

    @property
    def llm(self) -> LanguageModel: ...

    def tts_for(self, language: str) -> TextToSpeech: ...


@dataclass(slots=True)
class CallConfig:
    """What the core needs of the session (the gateway maps the Realtime session onto it)."""

    language: str = "ko"
    input_rate: int = 24000
    output_rate: int = 24000
    turn_detection: bool = True
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    min_silence_ms: int = 700
    max_silence_ms: int = 2000
    speed: float = 1.0
    #: Reply audio the client may buffer ahead of playback.
    lead_ms: float = 300.0
    #: Start the final decode and a held reply when the caller pauses (off: after the turn ends).
    speculative: bool = True
    #: Barge-in: voiced this long = a real interruption; shorter than cough_ms then silence = noise.
    confirm_voiced_ms: int = 600
    cough_ms: int = 300
    false_interruption_s: float = 1.5
    apology: str = ""
    #: A caller who speaks again within `rejoin_within_ms` of a turn we ended, before hearing
    #: `rejoin_unheard_ms` of our answer, was pausing, not done: the turns become one (Conversation).
    rejoin_within_ms: int = 2500
    rejoin_unheard_ms: float = 500.0
    #: Partial transcripts only for utterances longer than this: on CPU a decode takes about a
    #: second, and one running when the caller stops delays the final transcript behind it.
    partial_after_s: float = 2.5
    #: Words of emergency in the caller's turn get `pipeline.emergency.reply` with this number
    #: instead of the model's answer ("" turns the check off).
    emergency_number: str = ""


@dataclass(slots=True)
class Item:
    """A conversation item: a user turn (audio or text) or an assistant reply, with the text heard."""

    id: str
    role: str
    kind: str  # "audio" | "text"
    text: str = ""
    status: str = "completed"
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    timings: dict[str, float] = field(default_factory=dict)
    transcript_task: asyncio.Task[Any] | None = None
    failure: str | None = None
    committed: bool = False
    announced: bool = False
    #: The user turn this one carries on: the caller spoke again before hearing our answer to it.
    continues: Item | None = None

    def timings_ms(self) -> dict[str, float]:
        """Milliseconds from the end of this turn's speech to each later stamp (turn end, transcript)."""
        if "speech_end" not in self.timings:
            return {}
        base = self.timings["speech_end"]
        return {
            f"{k}_ms": round((v - base) * 1000.0, 1) for k, v in self.timings.items() if k != "speech_end"
        }

    def forget_transcript(self) -> None:
        """The caller spoke on: whatever was decoded of this turn so far is stale."""
        self.transcript_task, self.text, self.failure = None, "", None
        self.ready.clear()


def history(items: list[Item], skip: Item | None = None) -> list[Message]:
    """The conversation as the LLM sees it: every item with words, in order (less `skip`)."""
    return [
        Message("user" if i.role != "assistant" else "assistant", i.text)
        for i in items
        if i.text and i.role in ("user", "assistant", "system") and i is not skip
    ]


def rejoins(turn: Item | None, answer: Reply | None, gap_ms: int | None, config: CallConfig) -> bool:
    """Does a turn starting `gap_ms` after `turn` ended carry it on? Yes when it starts within
    `rejoin_within_ms` and `answer`, our reply to that turn, is still on its way and has been heard
    for less than `rejoin_unheard_ms`: the caller was pausing, not done, and did not hear us."""
    return (
        turn is not None
        and answer is not None
        and gap_ms is not None
        and gap_ms <= config.rejoin_within_ms
        and answer.active
        and answer.user_item_id == turn.id
        and answer.played_ms() < config.rejoin_unheard_ms
    )


def finished(item: Item) -> bool:
    """Do the words so far look like a finished turn? Unknown yet (still decoding) counts as no.

    Waiting for the transcript costs no latency: the reply cannot speak before it anyway. A
    transcript ending in a comma or a bare word ("When you hear the bell,") keeps the turn open
    up to max_silence_ms, so a sentence is not cut in two; one or two words ("Yes") are finished.
    """
    task = item.transcript_task
    if task is None or not task.done():
        return False
    if task.cancelled() or task.exception() is not None:
        return True
    text = task.result().text.strip()
    return not text or text.endswith(SENTENCE_END) or len(text.split()) <= 2
