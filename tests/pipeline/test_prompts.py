"""The companion's system prompt and apology lines."""

from __future__ import annotations

from pipeline.prompts import apology, system_prompt


def test_korean_prompt_has_persona_name_and_facts() -> None:
    """The Korean prompt asks for short spoken 존댓말 without markdown, names the user, lists their data."""
    facts = {
        "today_events": [{"time": "15:00", "title": "병원 진료"}],
        "memories": ["1972년 제주도 신혼여행"],
        "empty": [],
    }
    prompt = system_prompt("ko-KR", "김영희", facts)
    assert "존댓말" in prompt and "마크다운" in prompt and "한국어로" in prompt
    assert "김영희 님" in prompt
    assert "- 오늘 일정: time: 15:00, title: 병원 진료" in prompt
    assert "- 추억: 1972년 제주도 신혼여행" in prompt
    assert "empty" not in prompt


def test_english_prompt_without_name_or_facts() -> None:
    """The English prompt asks for short spoken sentences; no name or facts lines when none are given."""
    prompt = system_prompt("en", "", {})
    assert "no markdown" in prompt and "Always answer in English." in prompt
    assert "name is" not in prompt and "What you know" not in prompt


def test_apologies_per_language() -> None:
    """The apology after an upstream failure is in the caller's language (English for others)."""
    assert apology("ko") == "죄송해요, 잠시 문제가 생겼어요. 다시 말씀해 주시겠어요?"
    assert apology("en-US").startswith("I'm sorry") and apology("ja") == apology("en")
