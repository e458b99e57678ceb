"""Emergency words in Korean and English: what must raise the alarm, what must not, and the reply."""

from __future__ import annotations

import pytest

from pipeline import emergency

ALARMS = [
    ("살려줘요", "help"),
    ("살려 주세요!", "help"),
    ("가슴이 아파요", "chest_pain"),
    ("아이고 가슴이 너무 아파요.", "chest_pain"),
    ("가슴이아파", "chest_pain"),
    ("가슴이 조여요", "chest_pain"),
    ("넘어졌어요", "fall"),
    ("화장실에서 넘어져서 못 일어나요", "fall"),
    ("일어날 수가 없어요", "cannot_get_up"),
    ("숨이 차요", "breathing"),
    ("숨을 못 쉬겠어요", "breathing"),
    ("숨쉬기가 힘들어요", "breathing"),
    ("구급차 좀 불러 주세요", "help"),
    ("I have chest pain", "chest_pain"),
    ("My chest really hurts.", "chest_pain"),
    ("I fell in the bathroom", "fall"),
    ("I\u2019ve fallen and I can\u2019t get up", "fall"),
    ("I can't breathe", "breathing"),
    ("I CANNOT GET UP", "cannot_get_up"),
    ("Help!", "help"),
    ("somebody help me", "help"),
    ("Please call an ambulance", "help"),
    ("It was a nice day. But now my chest hurts.", "chest_pain"),
]

CALM = [
    "가슴 아픈 이야기네요",
    "마음이 아파요",
    "가슴이 안 아파요",
    "배가 아파요",
    "작년에 넘어졌어요",
    "넘어질 뻔했어요",
    "넘어졌는데 괜찮아요",
    "드라마에서 주인공이 쓰러졌어요",
    "숨 좀 돌리고 올게요",
    "오늘 날씨가 좋네요",
    "I fell in love with him in 1962",
    "I fell asleep early",
    "The leaves fell",
    "No chest pain today, thank you",
    "I don't have chest pain",
    "Can you help me find the remote?",
    "help me remember her name",
    "I fell years ago, when I was forty",
    "I was out of breath after the walk",
]


@pytest.mark.parametrize(("text", "kind"), ALARMS)
def test_emergencies_are_recognised(text: str, kind: str) -> None:
    """Each phrase of emergency or distress is recognised, as the right kind."""
    found = emergency.detect(text)
    assert found is not None and found.kind == kind, (text, found)


@pytest.mark.parametrize("text", CALM)
def test_ordinary_words_raise_no_alarm(text: str) -> None:
    """Idioms, negations, near misses and old stories are not emergencies."""
    assert emergency.detect(text) is None


def test_reply_is_calm_and_names_the_number() -> None:
    """The reply tells the caller to call the configured number and that family is being told."""
    ko = emergency.reply("ko-KR", "119")
    assert "119" in ko and "가족" in ko
    en = emergency.reply("en", "911")
    assert "911" in en and "family" in en
