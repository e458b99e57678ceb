"""The offline companion answers from the caller's words and data, honestly, in Korean and English."""

from __future__ import annotations

from pipeline.engines.base import ChatContext, Message, TextDelta, Usage
from pipeline.engines.offline import OfflineLLM

FACTS = {
    "user_name": "김영희",
    "today_events": [
        {"title": "병원 진료", "starts_at": "2026-11-26T15:00:00+09:00"},
        {"title": "손녀 전화", "time": "19:30"},
    ],
    "memories": [{"title": "제주도 신혼여행", "happened_on": "1972", "place": "제주도"}],
    "today": "11월 26일 목요일",
}
EN_FACTS = {
    "user_name": "Mary",
    "today_events": [{"title": "Doctor's appointment", "time": "15:00"}, "Call with Tom"],
    "memories": ["our honeymoon in Busan"],
}


async def say(text: str, language: str = "ko", facts: dict[str, object] | None = None, turns: int = 0) -> str:
    history = [Message("user", "음"), Message("assistant", "네")] * turns + [Message("user", text)]
    ctx = ChatContext(system_prompt="", language=language, facts=FACTS if facts is None else facts)
    *deltas, usage = [d async for d in OfflineLLM().stream(history, ctx)]
    assert all(isinstance(d, TextDelta) for d in deltas) and len(deltas) > 2  # word by word
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    # Words counted honestly (there is no tokenizer): the history's in, the reply's out.
    assert usage == Usage(sum(len(m.text.split()) for m in history), len(text.split()))
    return text


async def test_korean_schedule_from_events() -> None:
    """Asked what is on today, it reads the caller's events with spoken Korean times."""
    reply = await say("오늘 일정이 뭐예요?")
    assert "오후 3시에 병원 진료" in reply and "오후 7시 30분에 손녀 전화" in reply


async def test_english_schedule_and_empty_day() -> None:
    """English events are read out; with none it says the day is free."""
    assert await say("What's on my schedule?", "en", EN_FACTS) == (
        "Today you have Doctor's appointment at 15:00, Call with Tom."
    )
    assert "nothing on your calendar" in await say("Do I have any plans?", "en", {})


async def test_it_says_it_is_offline_when_asked() -> None:
    """Asked who it is, it says it is the offline companion, in the caller's language."""
    assert "오프라인 말동무" in await say("너는 누구야?")
    assert "offline companion" in await say("Are you a real person?", "en", EN_FACTS)


async def test_greets_by_name_and_asks_about_memories() -> None:
    """It greets the caller by name and asks a gentle question about one of their memories."""
    assert "김영희 님" in await say("안녕하세요")
    reply = await say("옛날 생각이 나네요")
    assert "제주도에서의 제주도 신혼여행" in reply and "들려주시겠어요" in reply
    assert "honeymoon in Busan" in await say("I remember the old days", "en", EN_FACTS)


async def test_acknowledges_what_was_said() -> None:
    """An ordinary remark is reflected back with a follow-up question."""
    reply = await say("아침에 공원에서 산책을 했어요")
    assert reply.startswith("아침에 공원에서 산책을 했어요.") and reply.endswith("?")
    assert 'You said "I made kimchi with my daughter".' in await say(
        "I made kimchi with my daughter", "en", {}
    )


async def test_worry_gets_empathy_and_health_advice() -> None:
    """A health worry gets empathy and a suggestion to talk to family or a doctor."""
    reply = await say("요즘 무릎이 너무 아파요")
    assert "힘드시겠어요" in reply and "의사" in reply
    assert "doctor" in await say("My back hurts a lot", "en", {})


async def test_date_only_when_known() -> None:
    """It tells the date from the caller's data and admits when it does not know."""
    assert "11월 26일 목요일" in await say("오늘 며칠이에요?")
    assert "don't know" in await say("What day is it?", "en", {})
