"""Recurring events: validate an RFC 5545 RRULE and expand it into occurrences (python-dateutil).

Recurrences expand in the creator's wall-clock time: "every Monday 09:00" stays 09:00 local. The
zone is the user's IANA zone when it matches the offset the event was written with (so DST zones
keep the wall clock across a change), otherwise the fixed offset stored on the event.

Validation and expansion are CPU work (a rule whose filters never match makes dateutil walk to
year 9999), so call them from a worker thread. We accept one RRULE line with FREQ DAILY, WEEKLY,
MONTHLY or YEARLY; a rule must occur at least once; UNTIL is stored in UTC (a date or local time
is read in the event's zone, a date meaning the end of that day).
"""

from __future__ import annotations

import calendar
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from dateutil.rrule import rrule, rrulestr

from server import ServerError

FREQUENCIES = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
PARTS = {
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYYEARDAY",
    "BYWEEKNO", "BYSETPOS", "BYHOUR", "BYMINUTE", "BYSECOND",
}  # fmt: skip
MAX_OCCURRENCES = 1000
MAX_INTERVAL = 1000


class InvalidRule(ServerError, ValueError):
    """An RRULE we refuse; the message says why, for a 422."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    starts_at: datetime  # aware, in the event's zone
    ends_at: datetime | None


def event_zone(tz_offset_minutes: int, user_time_zone: str | None, at: datetime) -> tzinfo:
    """The zone to expand in: the user's own zone if it had this offset at `at`, else the fixed offset."""
    fixed = timezone(timedelta(minutes=tz_offset_minutes))
    try:
        zone = zoneinfo.ZoneInfo(user_time_zone or "Asia/Seoul")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return fixed
    if at.astimezone(zone).utcoffset() == fixed.utcoffset(None):
        return zone
    return fixed


def normalize(text: str, dtstart: datetime) -> str:
    """Check `text` (with or without "RRULE:") for an event starting at `dtstart`; return it canonical.

    Raises InvalidRule. Blocking: the never-occurs check can take seconds for hostile rules.
    """
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or any(c in body for c in "\r\n"):
        raise InvalidRule("rrule must be a single RRULE line such as FREQ=WEEKLY;BYDAY=MO")
    parts: dict[str, str] = {}
    for item in body.upper().split(";"):
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise InvalidRule(f"rrule part {item!r} is not NAME=VALUE")
        if name not in PARTS:
            raise InvalidRule(f"rrule part {name} is not supported")
        if name in parts:
            raise InvalidRule(f"rrule part {name} appears twice")
        parts[name] = value
    if parts.get("FREQ") not in FREQUENCIES:
        raise InvalidRule(f"rrule FREQ must be one of {', '.join(sorted(FREQUENCIES))}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidRule("rrule may have COUNT or UNTIL, not both")
    if "INTERVAL" in parts and not (
        parts["INTERVAL"].isdigit() and 1 <= int(parts["INTERVAL"]) <= MAX_INTERVAL
    ):
        raise InvalidRule(f"rrule INTERVAL must be 1-{MAX_INTERVAL}")
    if "UNTIL" in parts:
        parts["UNTIL"] = _until_utc(parts["UNTIL"], dtstart.tzinfo or UTC)
    _check_month_days(parts)
    canonical = ";".join(f"{name}={value}" for name, value in parts.items())
    try:
        rule = build(canonical, dtstart)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise InvalidRule(f"invalid rrule: {e}") from e
    if rule.after(dtstart, inc=True) is None:
        raise InvalidRule("rrule never occurs")
    return canonical


def build(canonical: str, dtstart: datetime) -> rrule:
    """The dateutil rule for a canonical RRULE starting at `dtstart` (aware, in the event's zone)."""
    rule = rrulestr(canonical, dtstart=dtstart)
    assert isinstance(rule, rrule)  # one RRULE line, never an rruleset
    return rule


def expand(
    canonical: str | None,
    starts_at: datetime,
    ends_at: datetime | None,
    start: datetime,
    end: datetime,
    limit: int = MAX_OCCURRENCES,
) -> list[Occurrence]:
    """Occurrences that overlap [start, end), at most `limit`, in order.

    `starts_at` is the first start, already in the event's zone. An event without an end is a
    point in time: it is in the range when it starts in it.
    """
    duration = (ends_at - starts_at) if ends_at is not None else timedelta(0)
    stream: Iterator[datetime] = (
        iter([starts_at])
        if canonical is None
        else build(canonical, starts_at).xafter(start - duration, inc=True)
    )
    found: list[Occurrence] = []
    for occ in stream:
        if occ >= end or len(found) >= limit:
            break
        if occ + duration > start or (duration == timedelta(0) and occ >= start):
            found.append(Occurrence(occ, occ + duration if ends_at is not None else None))
    return found


def _until_utc(value: str, zone: tzinfo) -> str:
    """UNTIL as "YYYYMMDDTHHMMSSZ"; a date means through the end of that day in the event's zone."""
    try:
        if value.endswith("Z"):
            moment = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        elif "T" in value:
            moment = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
        else:
            day = datetime.strptime(value, "%Y%m%d").date()
            moment = datetime.combine(day, time(23, 59, 59), tzinfo=zone)
    except ValueError as e:
        raise InvalidRule(f"rrule UNTIL {value!r} is not a date or date-time") from e
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_month_days(parts: dict[str, str]) -> None:
    """Refuse BYMONTH + BYMONTHDAY pairs that never exist (Feb 30) without walking 8000 years."""
    if "BYMONTH" not in parts or "BYMONTHDAY" not in parts:
        return
    try:
        months = [int(m) for m in parts["BYMONTH"].split(",")]
        days = [int(d) for d in parts["BYMONTHDAY"].split(",")]
    except ValueError as e:
        raise InvalidRule("rrule BYMONTH and BYMONTHDAY must be numbers") from e
    leap = 2024
    for month in months:
        if not 1 <= month <= 12:
            raise InvalidRule(f"rrule BYMONTH {month} is not a month")
        length = calendar.monthrange(leap, month)[1]
        if any(1 <= abs(d) <= length for d in days):
            return
    raise InvalidRule("rrule never occurs: no such day in those months")


def local_day(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of `day` in `zone`, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end
