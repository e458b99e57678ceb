"""What the companion is told, and what it says when its language model fails.

`system_prompt(language, user_name, facts)` builds the instruction sent with every turn: a warm,
patient companion for an older person, speaking (not writing) short sentences in the caller's
language, Korean in polite 존댓말. Everything it says is read aloud by TTS, so the prompt forbids
markdown, emoji and lists. The caller's own data (today's events, memories) is appended as plain
facts so the model can refer to it without inventing any.

`apology(language)` is the line the core speaks when the LLM fails mid-reply (429, 5xx, timeout,
safety stop): the call goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PROMPTS = {
    "ko": (
        "당신은 '실버톡'의 말동무입니다. 어르신과 전화로 이야기를 나눕니다. "
        "따뜻하고 다정하며 인내심 있게, 존댓말(해요체)로 말하세요. "
        "대답은 소리 내어 읽히므로 한두 문장의 짧은 구어체 문장으로 말하고, "
        "마크다운, 이모티콘, 목록, 괄호, 영어 약어는 쓰지 마세요. "
        "천천히 알아듣기 쉽게 말하고, 한 번에 질문은 하나만 하세요. "
        "모르는 것은 지어내지 말고 솔직하게 모른다고 말하세요. "
        "건강이나 약에 관한 걱정에는 공감하고, 필요하면 가족이나 의사와 상의하시도록 권하세요."
    ),
    "en": (
        "You are Silvertalk's companion, talking with an older person on a voice call. "
        "Be warm, kind and patient. Your words are spoken aloud, so answer in one or two short "
        "spoken sentences: no markdown, no emoji, no lists, no parentheses, no abbreviations. "
        "Speak simply and ask at most one question at a time. "
        "Never make things up; if you do not know, say so honestly. "
        "Meet worries about health or medicine with empathy, and suggest talking to family or a doctor."
    ),
}

_NAME_LINE = {
    "ko": "어르신의 성함은 {name}입니다. 가끔 '{name} 님'이라고 불러 드리세요.",
    "en": "The person's name is {name}. Call them {name} now and then.",
}
_LANGUAGE_LINE = {
    "ko": "항상 한국어로 대답하세요.",
    "en": "Always answer in English.",
}
_FACTS_HEADER = {
    "ko": "어르신에 대해 알고 있는 사실입니다. 대화에 자연스럽게 활용하되 없는 내용은 지어내지 마세요:",
    "en": "What you know about them. Use it naturally; never invent more:",
}
_FACT_LABELS = {
    "ko": {
        "today_events": "오늘 일정",
        "memories": "추억",
        "today": "오늘 날짜",
        "recent_calls": "지난 통화 (날짜와 요약)",
        "recent_messages": "최근 음성 메시지 (caller: 어르신, companion: 당신)",
    },
    "en": {
        "today_events": "Today's events",
        "memories": "Memories",
        "today": "Today's date",
        "recent_calls": "Your last calls with them (date and summary)",
        "recent_messages": "Their latest voice messages (caller: them, companion: you)",
    },
}

_TOOLS_LINE = {
    "ko": (
        "어르신의 일정, 추억, 사진은 도구로 찾아보고 보여 드릴 수 있어요. 모르는 것은 도구로 확인하세요. "
        "일정을 넣거나 추억을 저장하거나 그림을 만드는 것처럼 무언가를 바꾸기 전에는, 어르신이 이미 "
        "그렇게 해 달라고 하신 게 아니면 짧게 여쭤보고 '네'라고 하시면 confirmed를 true로 해서 "
        "다시 부르세요. 도구가 needs_confirmation과 ask를 돌려주면 그 질문을 그대로 여쭤보세요."
    ),
    "en": (
        "You can look up and show the person's calendar, memories and photos with your tools; use "
        "them rather than guessing. Before changing anything (adding an event, saving a memory, "
        "making a picture), ask one short question and wait for a yes, unless they already asked "
        "for exactly that; then call again with confirmed true. When a tool answers "
        "needs_confirmation with ask, ask that question."
    ),
}

APOLOGIES = {
    "ko": "죄송해요, 잠시 문제가 생겼어요. 다시 말씀해 주시겠어요?",
    "en": "I'm sorry, something went wrong for a moment. Could you say that again?",
}


def lang_key(language: str) -> str:
    """Our two prompt languages: Korean for "ko*", English for everything else."""
    return "ko" if language.lower().startswith("ko") else "en"


def apology(language: str) -> str:
    """The short, kind line spoken when the language model fails mid-reply."""
    return APOLOGIES[lang_key(language)]


def _fact_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return "; ".join(_fact_text(v) for v in value)
    return str(value)


def system_prompt(
    language: str, user_name: str = "", facts: Mapping[str, Any] | None = None, *, tools: bool = False
) -> str:
    """The system instruction for one call: persona, language, the caller's name and own data, and
    (with `tools`) how to use the companion's tools: look things up, confirm before changing.

    `facts` values may be strings, lists, or dicts (e.g. events as {"time", "title"}); each
    non-empty one becomes a line "label: value". Unknown keys keep their key as the label.
    """
    key = lang_key(language)
    lines = [_PROMPTS[key], _LANGUAGE_LINE[key]]
    if user_name:
        lines.append(_NAME_LINE[key].format(name=user_name))
    if tools:
        lines.append(_TOOLS_LINE[key])
    known = {k: v for k, v in (facts or {}).items() if k != "user_name" and v not in (None, "", [], {})}
    if known:
        lines.append(_FACTS_HEADER[key])
        labels = _FACT_LABELS[key]
        lines += [f"- {labels.get(k, k)}: {_fact_text(v)}" for k, v in known.items()]
    return "\n".join(lines)
