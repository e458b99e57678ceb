"""Reminders in a call: what to mention at the start, and what comes due while the caller talks.

Pure: the gateway loads today's occurrences (recurring ones expanded in the caller's zone) as
`Reminder`s; the core asks `ReminderClock.opening(now)` once when the call starts and
`ReminderClock.due(now)` between turns (never while the caller speaks or the companion answers),
and speaks what it returns. Each reminder is said once when it comes due: at its start, or
`remind_minutes_before` earlier. Reminders that came due before the call started are not repeated
one by one; the opening line names what is still ahead today.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.prompts import lang_key

#: An event that began this long ago is still worth naming at the start ("you have the doctor now").
RECENT = timedelta(minutes=30)
#: How many of today's events the opening line names.
OPENING_MAX = 3


@dataclass(frozen=True, slots=True)
class Reminder:
    """One occurrence today: its title, its start (aware, in the caller's zone), when to remind."""

    title: str
    starts_at: datetime
    remind_minutes_before: int | None = None
    all_day: bool = False

    @property
    def due_at(self) -> datetime:
        return self.starts_at - timedelta(minutes=self.remind_minutes_before or 0)


def spoken_time(when: datetime, language: str) -> str:
    """ "오후 3시 30분" / "3:30 pm": how a time is said aloud."""
    if lang_key(language) == "ko":
        half = "오전" if when.hour < 12 else "오후"
        hour = when.hour % 12 or 12
        return f"{half} {hour}시" + (f" {when.minute}분" if when.minute else "")
    hour = when.hour % 12 or 12
    minutes = f":{when.minute:02d}" if when.minute else ""
    return f"{hour}{minutes} {'am' if when.hour < 12 else 'pm'}"


class ReminderClock:
    """Today's reminders for one call; says each once."""

    def __init__(self, reminders: Sequence[Reminder], language: str, call_started: datetime) -> None:
        self.language = lang_key(language)
        #: The caller's zone (that of `call_started`): ask with `datetime.now(clock.zone)`.
        self.zone = call_started.tzinfo
        self.reminders = sorted(reminders, key=lambda r: r.starts_at)
        # Timed reminders that came due before the call are not repeated one by one.
        self._said = {r for r in self.reminders if r.all_day or r.due_at <= call_started}

    def opening(self, now: datetime) -> str | None:
        """The line for the start of the call naming what is still ahead today, or None."""
        ahead = [r for r in self.reminders if r.all_day or r.starts_at >= now - RECENT][:OPENING_MAX]
        if not ahead:
            return None
        if self.language == "ko":
            named = [r.title if r.all_day else f"{spoken_time(r.starts_at, 'ko')}에 {r.title}" for r in ahead]
            return f"오늘 일정을 알려 드릴게요. {', '.join(named)} 있어요."
        named = [r.title if r.all_day else f"{r.title} at {spoken_time(r.starts_at, 'en')}" for r in ahead]
        return f"A quick look at today: {', '.join(named)}."

    def due(self, now: datetime) -> list[str]:
        """Lines for reminders that have come due since they were last checked (each said once)."""
        lines = []
        for r in self.reminders:
            if r in self._said or r.due_at > now:
                continue
            self._said.add(r)
            lines.append(self._line(r, now))
        return lines

    def next_due(self) -> datetime | None:
        """When the next unsaid reminder comes due (to wake up for it), or None."""
        pending = [r.due_at for r in self.reminders if r not in self._said]
        return min(pending) if pending else None

    def _line(self, r: Reminder, now: datetime) -> str:
        at = spoken_time(r.starts_at, self.language)
        if self.language == "ko":
            if r.starts_at > now:
                return f"잠깐 알려 드릴게요. {at}에 {r.title} 일정이 있어요."
            return f"잠깐 알려 드릴게요. 지금 {r.title} 시간이에요."
        if r.starts_at > now:
            return f"A gentle reminder: {r.title} at {at}."
        return f"A gentle reminder: it's time for {r.title} now."
