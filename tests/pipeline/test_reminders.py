"""Reminders in a call: the opening line names what is ahead today; each reminder comes due once."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.reminders import Reminder, ReminderClock, spoken_time

SEOUL = ZoneInfo("Asia/Seoul")
DAY = datetime(2026, 11, 27, tzinfo=SEOUL)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


TODAY = [
    Reminder("혈압약 드시기", at(8), remind_minutes_before=None),
    Reminder("병원", at(15, 30), remind_minutes_before=30),
    Reminder("딸 전화", at(19)),
]


def test_spoken_times() -> None:
    """Times are said the way people say them, in each language."""
    assert spoken_time(at(15, 30), "ko") == "오후 3시 30분" and spoken_time(at(9), "ko") == "오전 9시"
    assert spoken_time(at(15, 30), "en") == "3:30 pm" and spoken_time(at(0), "en") == "12 am"


def test_opening_names_what_is_still_ahead() -> None:
    """At 14:00 the morning pill is past; the doctor and the call from the daughter are named."""
    clock = ReminderClock(TODAY, "ko", call_started=at(14))
    assert (
        clock.opening(at(14)) == "오늘 일정을 알려 드릴게요. 오후 3시 30분에 병원, 오후 7시에 딸 전화 있어요."
    )
    english = ReminderClock(TODAY, "en", call_started=at(14))
    assert english.opening(at(14)) == "A quick look at today: 병원 at 3:30 pm, 딸 전화 at 7 pm."
    assert ReminderClock(TODAY, "ko", call_started=at(21)).opening(at(21)) is None


def test_each_reminder_comes_due_once_at_its_time() -> None:
    """The doctor is due 30 minutes early and said once; what was due before the call is not repeated."""
    clock = ReminderClock(TODAY, "ko", call_started=at(14))
    assert clock.due(at(14, 59)) == []
    assert clock.next_due() == at(15)
    assert clock.due(at(15, 1)) == ["잠깐 알려 드릴게요. 오후 3시 30분에 병원 일정이 있어요."]
    assert clock.due(at(15, 2)) == []
    assert clock.due(at(19) + timedelta(seconds=5)) == ["잠깐 알려 드릴게요. 지금 딸 전화 시간이에요."]
    assert clock.next_due() is None
