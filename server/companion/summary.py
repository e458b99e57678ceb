"""After a call: a short summary on the conversation, and new memories from what the caller told.

`summarize_conversation` reads the stored turns, asks the call's language model once for a JSON
object `{"summary": "...", "memories": [{"title", "body", "people", "place", "happened_on"}]}`
(the prompt lists the caller's existing memory titles, so it offers only new ones), and stores
the summary on the conversation and each new memory with `source = "conversation"`, skipping any
whose title the caller already has (compared without case, spaces or punctuation). They are then
ordinary memories: visible, editable and deletable through `/v1/memories`.

The offline companion is not a language model and extracts nothing: the conversation keeps the
summary the call wrote at hang-up (the caller's first words). A model that fails or answers
something other than JSON changes nothing either; items that do not validate are dropped one by one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from pipeline import EngineError
from pipeline.engines.base import ChatContext, LanguageModel, Message, TextDelta
from pipeline.engines.offline import OfflineLLM
from pipeline.prompts import lang_key
from server.companion.arguments import SaveMemoryArgs
from server.companion.tools import title_key
from storage.models import Conversation, Memory, Turn

log = logging.getLogger("silvertalk.companion")

MAX_NEW_MEMORIES = 5
MAX_TRANSCRIPT_CHARS = 12000

_INSTRUCTIONS = {
    "ko": (
        "당신은 어르신과 말동무의 통화 기록을 정리합니다. "
        "JSON 객체 하나만 출력하세요 (다른 글, 마크다운 없이). "
        '형식: {"summary": "통화 요약 한두 문장", "memories": [{"title": "짧은 제목", '
        '"body": "이야기 두세 문장", "people": ["이름"], "place": "장소 또는 null", '
        '"happened_on": "YYYY, YYYY-MM, YYYY-MM-DD 또는 null"}]}. '
        "memories에는 어르신이 직접 말한 삶의 이야기, 사람, 장소만 넣고 지어내지 마세요. "
        "이미 저장된 추억과 같은 것은 빼세요. 새 이야기가 없으면 빈 목록을 주세요. 한국어로 쓰세요."
    ),
    "en": (
        "You summarise a call between an older person and their companion. Output one JSON object "
        'only (no other text, no markdown): {"summary": "one or two sentences", "memories": '
        '[{"title": "short title", "body": "the story in two or three sentences", "people": ["name"], '
        '"place": "a place or null", "happened_on": "YYYY, YYYY-MM, YYYY-MM-DD or null"}]}. '
        "Memories are only stories, people and places of their life that the person told themselves; "
        "never invent. Leave out anything already saved. No new story: an empty list. Write in English."
    ),
}
_LABELS = {
    "ko": ("어르신", "말동무", "이미 저장된 추억", "통화 기록"),
    "en": ("Person", "Companion", "Already saved memories", "The call"),
}


class _Extracted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = Field(default="", max_length=4000)
    memories: list[dict[str, Any]] = Field(default_factory=list, max_length=50)


@dataclass
class CallSummary:
    """What `summarize_conversation` did."""

    extracted: bool
    summary: str | None = None
    memory_ids: list[uuid.UUID] = field(default_factory=list)
    duplicates: int = 0
    #: Why nothing was extracted (offline companion, no words, the model failed, not JSON).
    reason: str | None = None


def can_extract(llm: LanguageModel | None) -> bool:
    """Whether `llm` is a real language model (the offline companion is not)."""
    return llm is not None and not isinstance(llm, OfflineLLM)


async def summarize_conversation(
    sessions: async_sessionmaker[AsyncSession],
    llm: LanguageModel | None,
    conversation_id: uuid.UUID,
    *,
    timeout_s: float = 60.0,
) -> CallSummary:
    """Summarise a finished call and save its new memories. Never raises for a model failure."""
    async with sessions() as s:
        conv = await s.get(Conversation, conversation_id)
        if conv is None:
            return CallSummary(False, reason="no such conversation")
        rows = (
            await s.execute(
                sa.select(Turn)
                .where(col(Turn.conversation_id) == conversation_id, col(Turn.text) != "")
                .order_by(col(Turn.started_at), col(Turn.id))
            )
        ).scalars()
        turns = list(rows)
        existing = await _titles(s, conv.user_id)
    if not any(t.role == "user" for t in turns):
        return CallSummary(False, summary=conv.summary, reason="the caller said nothing")
    if not can_extract(llm):
        return CallSummary(False, summary=conv.summary, reason="the offline companion does not extract")
    assert llm is not None
    language = lang_key(conv.language)
    try:
        text = await asyncio.wait_for(_ask(llm, language, turns, existing), timeout_s)
    except (EngineError, TimeoutError) as e:
        log.warning("summary of conversation %s failed: %s", conversation_id, e)
        return CallSummary(False, summary=conv.summary, reason=f"the language model failed: {e}")
    parsed = _parse(text)
    if parsed is None:
        log.warning("summary of conversation %s: the model did not answer JSON", conversation_id)
        return CallSummary(False, summary=conv.summary, reason="the language model did not answer JSON")
    return await _store(sessions, conv, parsed)


async def _ask(llm: LanguageModel, language: str, turns: list[Turn], existing: list[str]) -> str:
    person, companion, saved, call = _LABELS[language]
    lines = [f"{person if t.role == 'user' else companion}: {t.text}" for t in turns]
    transcript = "\n".join(lines)[-MAX_TRANSCRIPT_CHARS:]
    prompt = f"{saved}: {json.dumps(existing[:200], ensure_ascii=False)}\n\n{call}:\n{transcript}"
    context = ChatContext(system_prompt=_INSTRUCTIONS[language], language=language)
    parts = []
    async for out in llm.stream([Message("user", prompt)], context):
        if isinstance(out, TextDelta):
            parts.append(out.text)
    return "".join(parts)


async def _titles(s: AsyncSession, user_id: uuid.UUID) -> list[str]:
    rows = await s.execute(sa.select(col(Memory.title)).where(col(Memory.user_id) == user_id))
    return list(rows.scalars())


def _memory_args(item: dict[str, Any]) -> SaveMemoryArgs | None:
    """A memory as validated arguments; a date that is not one is dropped, not the whole memory."""
    for attempt in (item, {**item, "happened_on": None}):
        try:
            return SaveMemoryArgs.model_validate(attempt)
        except ValidationError as e:
            error = e
    log.info("summary: dropped a memory that does not validate: %s", error.errors(include_url=False)[:1])
    return None


def _parse(text: str) -> _Extracted | None:
    """The JSON object in `text` (fences and chatter around it ignored), or None."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return _Extracted.model_validate(json.loads(text[start : end + 1]))
    except (ValueError, ValidationError):
        return None


async def _store(
    sessions: async_sessionmaker[AsyncSession], conv: Conversation, parsed: _Extracted
) -> CallSummary:
    result = CallSummary(True, summary=parsed.summary.strip()[:1000] or conv.summary)
    async with sessions() as s:
        row = await s.get(Conversation, conv.id)
        if row is not None and parsed.summary.strip():
            row.summary = result.summary
        titles = {title_key(t) for t in await _titles(s, conv.user_id)}
        for item in parsed.memories:
            args = _memory_args(item)
            if args is None:
                continue
            key = title_key(args.title)
            if not key or key in titles:
                result.duplicates += 1
                continue
            if len(result.memory_ids) >= MAX_NEW_MEMORIES:
                break
            titles.add(key)
            memory = Memory(
                user_id=conv.user_id,
                title=args.title,
                body=args.body,
                people=args.people,
                place=args.place or None,
                happened_on=args.happened_on,
                source="conversation",
            )
            s.add(memory)
            await s.flush()
            result.memory_ids.append(memory.id)
        await s.commit()
    return result


class SummaryQueue:
    """Runs `summarize_conversation` after hang-ups in background tasks, so a call ends at once.

    One per app (`services.summaries`); `aclose` cancels what is still running (the
    conversation keeps the summary the call wrote).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self._tasks: set[asyncio.Task[CallSummary | None]] = set()

    def submit(
        self, llm: LanguageModel | None, conversation_id: uuid.UUID
    ) -> asyncio.Task[CallSummary | None]:
        """Start summarising `conversation_id`; the task's result is the CallSummary (None on a bug)."""
        task = asyncio.create_task(self._run(llm, conversation_id), name=f"summary-{conversation_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, llm: LanguageModel | None, conversation_id: uuid.UUID) -> CallSummary | None:
        try:
            return await summarize_conversation(self.sessions, llm, conversation_id)
        except Exception:  # a database failure must not surface anywhere but the log
            log.exception("summary of conversation %s failed", conversation_id)
            return None

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
