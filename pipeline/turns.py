"""The conversation's data: call configuration, items (turns), and what makes a turn look finished.

Kept apart from `pipeline.conversation` so the turn-taking logic there reads on its own.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.engines.base import (
    LanguageModel,
    Message,
    SpeechToText,
    TextToSpeech,
    ToolCall,
    ToolResult,
    Transcript,
)
from pipeline.tools import NO_OUTPUT

if TYPE_CHECKING:
    from pipeline.reply import Reply


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
    #: Bounds of the speaker's learned end-of-turn silence; `max_silence_ms` is also the wait for a
    #: turn whose words are unfinished (older speakers pause 1-2 s mid-sentence).
    min_silence_ms: int = 700
    max_silence_ms: int = 2500
    #: The end-of-turn table (`pipeline.turn_end`): the silence when words and sound both say
    #: finished, the wait when they disagree, and the audio model's "finished" probability.
    end_finished_ms: int = 350
    end_doubt_ms: int = 1600
    end_audio_threshold: float = 0.5
    #: Per language: the decoder's probability of how the transcript ends below which words that
    #: read finished are doubted (`TurnEndPolicy.end_word_p`); a language not listed: never.
    end_word_p: dict[str, float] = field(default_factory=dict)
    #: Per language: the probability from which an unfinished reading the decoder weighed for the
    #: last word doubts words that read finished (`TurnEndPolicy.end_alt_p`); not listed: never.
    end_alt_p: dict[str, float] = field(default_factory=dict)
    speed: float = 1.0
    #: Reply audio the client may buffer ahead of playback.
    lead_ms: float = 300.0
    #: Start the final decode and a held reply when the caller pauses (off: after the turn ends).
    speculative: bool = True
    #: ... after this much silence (not 160 ms) while the decoder has nothing else to do (0: never).
    early_pause_ms: int = 80
    #: Barge-in: voiced this long = a real interruption; shorter than cough_ms then silence = noise.
    confirm_voiced_ms: int = 600
    cough_ms: int = 300
    #: ... silence that long, that is: a first short word and the gap after it ("And so, | my
    #: fellow Americans", 80 ms of voice then 160-180 ms) is not a cough.
    cough_pause_ms: int = 300
    false_interruption_s: float = 1.5
    apology: str = ""
    #: A caller who speaks again within `rejoin_within_ms` of the end of their speech in a turn we
    #: ended, before hearing `rejoin_unheard_ms` of our answer, was pausing, not done: the turns
    #: become one (Floor). Measured from their last word, so it must exceed `max_silence_ms`.
    rejoin_within_ms: int = 3500
    rejoin_unheard_ms: float = 500.0
    #: ... or while our answer is in its first `rejoin_began_ms` of playing, however much was sent:
    #: never talk into a pause.
    rejoin_began_ms: float = 1000.0
    #: Partial transcripts only for utterances longer than this: on CPU a decode takes about a
    #: second, and one running when the caller stops delays the final transcript behind it.
    partial_after_s: float = 2.5
    #: No reply waits longer than this for a transcript: a decode that has not come back by then
    #: settles its turn as failed (the call goes on), so one lost transcript cannot stall the call.
    transcript_timeout_s: float = 30.0
    #: Caller audio held uncommitted (turn detection off), and the longest turn (on): past it the
    #: excess is dropped with an `input_audio_buffer_full` error / the turn is committed there.
    max_input_audio_s: float = 120.0
    #: Words of emergency in the caller's turn get `pipeline.emergency.reply` with this number
    #: instead of the model's answer ("" turns the check off).
    emergency_number: str = ""


@dataclass(slots=True)
class Item:
    """A conversation item: a user turn (audio or text) or an assistant reply, with the text heard."""

    id: str
    role: str
    kind: str  # "audio" | "text" | "function_call" | "function_call_output"
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
    #: With `continues`: the caller's pause (ms) between that turn's last word and this one.
    pause_before_ms: int | None = None
    #: How its end was decided (`pipeline.turn_end.Decision.as_timings`), for the stored timings.
    end_of_turn: dict[str, float | str] = field(default_factory=dict)
    #: function_call: the model's (or the client's) call of a client tool.
    call: ToolCall | None = None
    #: function_call: the companion's own tools the model called in the same turn, with their
    #: results (the next reply must see the whole turn; the client never sees these).
    ran: tuple[tuple[ToolCall, ToolResult], ...] = ()
    #: function_call_output: the client's answer to a call.
    result: ToolResult | None = None

    def timings_ms(self) -> dict[str, float | str]:
        """Milliseconds from the end of this turn's speech to each later stamp (turn end, transcript),
        and how its end was decided."""
        if "speech_end" not in self.timings:
            return {}
        base = self.timings["speech_end"]
        out: dict[str, float | str] = {
            f"{k}_ms": round((v - base) * 1000.0, 1) for k, v in self.timings.items() if k != "speech_end"
        }
        return {**out, **self.end_of_turn}

    def forget_transcript(self) -> None:
        """The caller spoke on: whatever was decoded of this turn so far is stale."""
        self.transcript_task, self.text, self.failure = None, "", None
        self.ready.clear()


def history(items: list[Item], skip: Item | None = None) -> list[Message]:
    """The conversation as the LLM sees it: every item with words, in order (less `skip`).

    Function calls join the assistant message before them (one model turn: its words and its
    calls), and each call's result follows that turn at once, as both APIs require: the client's
    output wherever it sits in the conversation, or `NO_OUTPUT` while there is none. An output
    whose call was deleted is left out.
    """
    outputs: dict[str, ToolResult] = {}
    for i in items:
        if i.result is not None and i is not skip:
            outputs.setdefault(i.result.call_id, i.result)
    out: list[Message] = []
    turn: int | None = None  # the assistant message gathering calls
    results: list[ToolResult] = []
    for i in items:
        if i is skip or i.kind == "function_call_output":
            continue
        if i.call is not None:
            if turn is None:
                if not out or out[-1].role != "assistant" or out[-1].tool_calls:
                    out.append(Message("assistant"))
                turn = len(out) - 1
            ran = [c for c, _ in i.ran]
            out[turn] = replace(out[turn], tool_calls=(*out[turn].tool_calls, *ran, i.call))
            answer = outputs.get(i.call.id) or ToolResult(i.call.id, i.call.name, NO_OUTPUT)
            results += [*(r for _, r in i.ran), answer]
            continue
        if turn is not None:
            out += [Message("tool", tool_result=r) for r in results]
            turn, results = None, []
        if i.text and i.role in ("user", "assistant", "system"):
            out.append(Message("user" if i.role != "assistant" else "assistant", i.text))
    out += [Message("tool", tool_result=r) for r in results]
    return out


def rejoins(
    turn: Item | None, answer: Reply | None, gap_ms: int | None, config: CallConfig, now: float
) -> bool:
    """Does a turn starting `gap_ms` after `turn` ended carry it on? Yes when it starts within
    `rejoin_within_ms` and `answer`, our reply to that turn, is still on its way and either has been
    heard for less than `rejoin_unheard_ms` or began playing less than `rejoin_began_ms` ago (at
    `now`): the caller was pausing, not done, and we were talking into their pause."""
    if (
        turn is None
        or answer is None
        or gap_ms is None
        or gap_ms > config.rejoin_within_ms
        or not answer.active
        or answer.user_item_id != turn.id
    ):
        return False
    began = answer.stamps.get("first_audio_sent")
    return (
        answer.played_ms() < config.rejoin_unheard_ms
        or began is None
        or (now - began) * 1000.0 < config.rejoin_began_ms
    )


def words_so_far(item: Item) -> Transcript | None:
    """The turn's transcript so far (with how sure the decoder was of its ending), or None while
    it is still being decoded (or not started).

    A failed or cancelled decode gives no words (the sound and the pauses decide).
    """
    task = item.transcript_task
    if task is None or not task.done():
        return None
    if task.cancelled() or task.exception() is not None:
        return Transcript(text="", language="")
    transcript: Transcript = task.result()
    return transcript
