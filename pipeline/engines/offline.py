"""The offline companion: the embedded default when no language model is configured.

It is not a language model and never pretends to be one. It listens to the caller's last words
and answers with simple templates, in Korean or English, from what they said and from their own
data in `ChatContext.facts`:

- `facts["today_events"]`: list of strings or dicts with `title` and `time` ("15:00") or
  `starts_at` (datetime or ISO string), optional `all_day`;
- `facts["memories"]`: list of strings or dicts with `title`, optional `happened_on`, `place`;
- `facts["user_name"]` (or `ChatContext.user_name`), `facts["today"]` (a date, for "what day").

When the call offers the companion's tools it uses them the same way a model would: "what is on
today" calls `list_events` and "tell me about <a memory>" calls `find_memories` with the caller's
words, then it answers from the result. It says honestly that it cannot set reminders, save
things or make pictures. It greets, says honestly what it is when asked, reads out today's
events, asks a gentle question about a memory, meets worries with empathy (suggesting family or
a doctor for health), says goodbye, and otherwise acknowledges what was said and asks to hear
more. Replies stream word by word, like a real model's, so the rest of the pipeline is exercised
the same way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pipeline.engines.base import ChatContext, LLMOutput, Message, TextDelta, ToolCall, ToolResult, Usage
from pipeline.prompts import lang_key

# Keyword cues per intent, checked in this order (first match wins).
_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "identity": {
        "ko": ("누구", "너는", "당신은", "로봇", "기계", "인공지능", "사람이", "오프라인"),
        "en": ("who are you", "what are you", "are you a", "robot", "real person", "offline", "an ai"),
    },
    "cannot": {
        "ko": ("알람", "깨워", "예약해", "일정 넣", "일정 추가", "저장해", "그림 그려", "그려 줘", "그려줘"),
        "en": (
            "remind me",
            "set an alarm",
            "wake me",
            "add an event",
            "save that",
            "draw me",
            "make a picture",
        ),
    },
    "schedule": {
        "ko": ("일정", "약속", "스케줄", "오늘 뭐", "오늘 무슨", "할 일", "병원 가는"),
        "en": ("schedule", "plans", "appointment", "what's on", "what is on", "calendar", "do i have"),
    },
    "date": {"ko": ("며칠", "무슨 요일", "날짜"), "en": ("what day", "the date", "what date")},
    "memory": {
        "ko": ("추억", "옛날", "예전", "기억", "젊었을"),
        "en": ("remember", "memory", "memories", "old days", "when i was young"),
    },
    "worry": {
        "ko": ("아파", "아프", "힘들", "외로", "슬퍼", "슬프", "우울", "걱정", "잠이 안", "무서"),
        "en": ("sad", "lonely", "tired", "pain", "hurt", "sick", "worried", "scared", "can't sleep"),
    },
    "bye": {
        "ko": ("잘 있어", "안녕히", "끊을게", "그만", "잘 자", "다음에"),
        "en": ("goodbye", "bye", "good night", "talk later", "hang up"),
    },
    "thanks": {"ko": ("고마워", "고맙", "감사"), "en": ("thank",)},
    "greeting": {
        "ko": ("안녕", "반가", "여보세요"),
        "en": ("hello", "hi", "hey", "good morning", "good evening"),
    },
}
_HEALTH = {"ko": ("아파", "아프", "약", "병원", "잠이"), "en": ("pain", "hurt", "sick", "medicine", "sleep")}

_T: dict[str, dict[str, Any]] = {
    "ko": {
        "hello": "안녕하세요{name}. 목소리 들으니 반가워요. 오늘 기분은 어떠세요?",
        "identity": "저는 실버톡의 오프라인 말동무예요. 인터넷의 인공지능이 연결되어 있지 않아서 "
        "간단한 대답만 할 수 있어요. 그래도 말씀은 잘 들을게요.",
        "events": "오늘은 {items} 일정이 있어요.",
        "no_events": "오늘은 등록된 일정이 없어요. 편안하게 쉬셔도 좋겠어요.",
        "date": "오늘은 {today}이에요.",
        "no_date": "죄송해요, 저는 오늘 날짜를 알 수 없어요.",
        "memory": "{title}{when} 이야기가 생각나요. 그때 이야기를 좀 더 들려주시겠어요?",
        "no_memory": "옛날 이야기 듣고 싶어요. 가장 기억에 남는 일이 무엇인가요?",
        "worry": "{said} 많이 힘드시겠어요. 제가 곁에서 들을게요.",
        "health": " 몸이 불편하시면 가족분이나 의사 선생님과 꼭 상의해 보세요.",
        "bye": "오늘 이야기 나눠 주셔서 고마워요{name}. 편안한 하루 보내세요.",
        "thanks": "저야말로 고마워요{name}. 언제든 또 이야기해 주세요.",
        "echo": [
            "{said} 그러셨군요. 조금 더 이야기해 주시겠어요?",
            "{said} 그렇군요. 그래서 어떻게 되었어요?",
            "{said} 잘 들었어요. 그때 기분은 어떠셨어요?",
        ],
        "listen": "네, 듣고 있어요. 편하게 말씀하세요.",
        "cannot": "죄송해요, 저는 오프라인 말동무라서 그건 해 드릴 수 없어요. 앱에서 직접 하실 수 있어요.",
        "found": "{title}{when} 이야기를 찾았어요. {body} 그때 이야기를 더 들려주시겠어요?",
        "not_found": "그 이야기는 아직 저장된 추억에서 찾지 못했어요. 들려주시겠어요?",
        "name": " {name} 님",
        "sep": ", ",
    },
    "en": {
        "hello": "Hello{name}. It's good to hear your voice. How are you feeling today?",
        "identity": "I'm Silvertalk's offline companion. No online AI is connected, so I can only "
        "give simple answers. But I'm listening.",
        "events": "Today you have {items}.",
        "no_events": "There's nothing on your calendar today. A good day to rest.",
        "date": "Today is {today}.",
        "no_date": "I'm sorry, I don't know today's date.",
        "memory": "I remember you told me about {title}{when}. Would you tell me more about it?",
        "no_memory": "I'd love to hear about the old days. What do you remember most fondly?",
        "worry": "{said} That sounds hard. I'm here and I'm listening.",
        "health": " If you feel unwell, please talk to your family or a doctor.",
        "bye": "Thank you for talking with me{name}. Have a peaceful day.",
        "thanks": "Thank you too{name}. Talk to me any time.",
        "echo": [
            "{said} I see. Would you tell me a little more?",
            "{said} And then what happened?",
            "{said} Thank you for telling me. How did that make you feel?",
        ],
        "listen": "I'm listening. Take your time.",
        "cannot": "I'm sorry, I'm the offline companion and can't do that. You can do it in the app.",
        "found": "I found your memory of {title}{when}. {body} Would you tell me more about it?",
        "not_found": "I couldn't find that among your saved memories yet. Would you tell me about it?",
        "name": ", {name}",
        "sep": ", ",
    },
}


def _event_text(event: Any, lang: str) -> str:
    if not isinstance(event, dict):
        return str(event)
    title = str(event.get("title", "")).strip()
    when = event.get("time") or event.get("starts_at")
    if isinstance(when, str) and "T" in when:
        when = datetime.fromisoformat(when)
    if isinstance(when, datetime):
        when = when.strftime("%H:%M") if not event.get("all_day") else None
    if not when:
        return title
    if lang == "ko":
        hour, _, minute = str(when).partition(":")
        h = int(hour)
        spoken = f"{'오전' if h < 12 else '오후'} {h % 12 or 12}시" + (
            f" {int(minute)}분" if minute.strip("0") else ""
        )
        return f"{spoken}에 {title}"
    return f"{title} at {when}"


def _memory_parts(memory: Any, lang: str) -> tuple[str, str]:
    if not isinstance(memory, dict):
        return str(memory), ""
    title = str(memory.get("title", "")).strip()
    year = str(memory.get("happened_on") or "")[:4]
    place = str(memory.get("place") or "").strip()
    if lang == "ko":
        when = f"({year}년)" if year else ""
        return (f"{place}에서의 {title}" if place else title), (f" {when}" if when else "")
    return title, (f" in {year}" if year else "") + (f" at {place}" if place else "")


def _has(text: str, cue: str, lang: str) -> bool:
    """Korean cues match inside words (particles and endings attach to them); English ones at a word
    start ("hurt" in "hurts"), and short ones as whole words ("hi" is not in "kimchi" or "his")."""
    if lang == "ko":
        return cue in text
    end = r"(?!\w)" if len(cue) <= 3 else ""
    return re.search(rf"(?<!\w){re.escape(cue)}{end}", text) is not None


def _echo(text: str, lang: str) -> str:
    """A short reflection of the caller's words: their last clause, at most eight words."""
    clause = re.split(r"[.!?。]\s*", text.strip().rstrip(".!?"))[-1].strip() or text.strip()
    words = clause.split()
    short = " ".join(words[-8:])
    if not short:
        return ""
    return f"{short}." if lang == "ko" else f'You said "{short}".'


class OfflineLLM:
    """A `LanguageModel` that answers from templates and the caller's own data. No network."""

    def __init__(self, *, word_delay_s: float = 0.0) -> None:
        self.word_delay_s = word_delay_s

    def tool_call(self, history: Sequence[Message], context: ChatContext) -> ToolCall | None:
        """The tool to call first, when the call offers it: `list_events` for "what is on today",
        `find_memories` with the caller's words for a question about a memory. None otherwise, and
        always right after a tool result (then `reply` answers from it)."""
        if not history or history[-1].role != "user":
            return None
        offered = {t.name for t in context.tools}
        lang = lang_key(context.language)
        low = history[-1].text.lower()
        intent = next((i for i, cues in _CUES.items() if any(_has(low, c, lang) for c in cues[lang])), None)
        turn = sum(1 for m in history if m.role == "assistant")
        if intent == "schedule" and "list_events" in offered:
            return ToolCall(f"local-offline-{turn}", "list_events", {})
        if intent == "memory" and "find_memories" in offered:
            return ToolCall(f"local-offline-{turn}", "find_memories", {"words": history[-1].text[:500]})
        return None

    def reply(self, history: Sequence[Message], context: ChatContext) -> str:
        """The whole reply for this turn (what `stream` yields word by word)."""
        lang = lang_key(context.language)
        if history and history[-1].role == "tool" and history[-1].tool_result is not None:
            return self._from_tool(history[-1].tool_result, lang)
        t = _T[lang]
        facts = context.facts or {}
        name = str(facts.get("user_name") or context.user_name or "").strip()
        name_part = t["name"].format(name=name) if name else ""
        said = next((m.text for m in reversed(history) if m.role == "user" and m.text.strip()), "")
        turn = sum(1 for m in history if m.role == "assistant")
        low = said.lower()
        intent = next(
            (i for i, cues in _CUES.items() if any(_has(low, c, lang) for c in cues[lang])),
            "echo" if said else "hello",
        )
        if intent in ("hello", "greeting"):
            return t["hello"].format(name=name_part)
        if intent == "identity":
            return t["identity"]
        if intent == "cannot":
            return t["cannot"]
        if intent == "schedule":
            events = [e for e in (_event_text(e, lang) for e in facts.get("today_events") or ()) if e]
            return t["events"].format(items=t["sep"].join(events)) if events else t["no_events"]
        if intent == "date":
            return t["date"].format(today=facts["today"]) if facts.get("today") else t["no_date"]
        if intent == "memory":
            return self._memory(facts, lang, turn)
        if intent == "worry":
            text = t["worry"].format(said=_echo(said, lang)).strip()
            if any(_has(low, c, lang) for c in _HEALTH[lang]):
                text += t["health"]
            return text
        if intent in ("bye", "thanks"):
            return t[intent].format(name=name_part)
        # Every third plain turn, bring up one of their memories: a gentle way to keep talking.
        if turn % 3 == 2 and facts.get("memories"):
            return self._memory(facts, lang, turn)
        echo = _echo(said, lang)
        return t["echo"][turn % len(t["echo"])].format(said=echo).strip() if echo else t["listen"]

    def _memory(self, facts: dict[str, Any], lang: str, turn: int) -> str:
        memories = list(facts.get("memories") or ())
        if not memories:
            return _T[lang]["no_memory"]
        title, when = _memory_parts(memories[turn % len(memories)], lang)
        return _T[lang]["memory"].format(title=title, when=when)

    def _from_tool(self, result: ToolResult, lang: str) -> str:
        t = _T[lang]
        data = result.result
        if result.name == "list_events":
            events = [e for e in (_event_text(e, lang) for e in data.get("events") or ()) if e]
            return t["events"].format(items=t["sep"].join(events)) if events else t["no_events"]
        if result.name == "find_memories":
            found = data.get("memories") or []
            if not found:
                return t["not_found"]
            title, when = _memory_parts(found[0], lang)
            body = re.split(r"(?<=[.!?。])\s", str(found[0].get("body") or "").strip())[0]
            return " ".join(t["found"].format(title=title, when=when, body=body).split())
        return t["listen"]

    async def stream(self, history: Sequence[Message], context: ChatContext) -> AsyncIterator[LLMOutput]:
        """Yield one ToolCall when a tool answers better (see `tool_call`); else the reply word by
        word (each with its trailing space), then a `Usage` that counts words, not tokens (there is
        no tokenizer here): the history's in, the reply's out. Never raises."""
        call = self.tool_call(history, context)
        if call is not None:
            yield call
            return
        words = self.reply(history, context).split(" ")
        for i, word in enumerate(words):
            yield TextDelta(word + (" " if i < len(words) - 1 else ""))
            await asyncio.sleep(self.word_delay_s)
        yield Usage(sum(len(m.text.split()) for m in history), len([w for w in words if w]))


def load(settings: Any) -> OfflineLLM:
    """Factory for the registry."""
    return OfflineLLM()
