"""Recurring events: validate an RFC 5545 RRULE and expand it into occurrences (python-dateutil).

Recurrences expand in the creator's wall-clock time: "every Monday 09:00" stays 09:00 local. The
zone is the user's IANA zone when it matches the offset the event was written with (so DST zones
keep the wall clock across a change), otherwise the fixed offset stored on the event.

What it costs. dateutil walks every period (day, week, month, year) from DTSTART, and only stops
at UNTIL or COUNT when a candidate passes the rule's filters, otherwise at year 9999. So:
- we accept what a calendar user needs and no more: FREQ DAILY, WEEKLY, MONTHLY or YEARLY; no
  BYWEEKNO, BYYEARDAY or BYSECOND; at most 24 times a day; COUNT up to 1000; dates 1900-2200;
- `expand` jumps DTSTART forward by whole periods to just before the window (rules without
  COUNT; the implicit BY* parts that dateutil takes from DTSTART are written out first, so the
  jump changes nothing), and
- runs the walk 400*k years later, near year 9999: the Gregorian calendar (dates and weekdays)
  repeats exactly every 400 years, so the answer is the same, and a rule that has no further
  occurrence stops at 9999 after at most ~400 years of periods instead of 8000.
The never-occurs check at validation uses the same shift. Worst case (a daily rule with no
occurrence in 400 years) is about 150k periods, a fraction of a second; typical rules a few
periods. Still CPU work: call `normalize` and `expand` from a worker thread.

UNTIL is stored in UTC (a date or local time is read in the event's zone, a date meaning the end
of that day).
"""

from __future__ import annotations

import calendar
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from dateutil.rrule import rrule, rrulestr

from server import ServerError

FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
PARTS = {
    "FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS",
    "BYHOUR", "BYMINUTE",
}  # fmt: skip
MAX_OCCURRENCES = 1000
MAX_INTERVAL = 1000
MAX_COUNT = 1000
MAX_TIMES_PER_DAY = 24
# Years an event, an UNTIL or a range may name: a birth year to a long plan, not year 1 or 9999.
MIN_YEAR = 1900
MAX_YEAR = 2200
_CYCLE_YEARS = 400  # the Gregorian calendar repeats exactly (146097 days = 20871 weeks)
_SHIFT_TO = datetime.max.year - _CYCLE_YEARS  # walk within the last 400-800 years before 9999
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


class InvalidRule(ServerError, ValueError):
    """An RRULE or date we refuse; the message says why, for a 422."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    starts_at: datetime  # aware, in the event's zone
    ends_at: datetime | None


def check_year(when: datetime, what: str = "date") -> datetime:
    """`when` if its year (in UTC and as written) is within MIN_YEAR-MAX_YEAR; else InvalidRule."""
    try:
        years = {when.year, when.astimezone(UTC).year if when.tzinfo else when.year}
    except OverflowError:  # 0001-01-01T00:00+14:00 has no UTC time
        years = {datetime.min.year}
    if min(years) < MIN_YEAR or max(years) > MAX_YEAR:
        raise InvalidRule(f"{what} must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return when


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

    Raises InvalidRule. CPU work (the never-occurs check walks up to ~400 years of periods).
    """
    check_year(dtstart, "starts_at")
    parts = _parse(text)
    if "UNTIL" in parts:
        parts["UNTIL"] = _until_utc(parts["UNTIL"], dtstart.tzinfo or UTC)
    canonical = ";".join(f"{name}={value}" for name, value in parts.items())
    first = dtstart.replace(tzinfo=None)
    years = _shift_years(first.year)
    try:
        rule = _shifted_rule(parts, first, years, dtstart.tzinfo)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise InvalidRule(f"invalid rrule: {e}") from e
    if rule.after(first.replace(year=first.year + years), inc=True) is None:
        raise InvalidRule("rrule never occurs (not once in 400 years)")
    return canonical


def _parse(text: str) -> dict[str, str]:
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
        raise InvalidRule(f"rrule FREQ must be one of {', '.join(FREQUENCIES)}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise InvalidRule("rrule may have COUNT or UNTIL, not both")
    _number(parts, "INTERVAL", 1, MAX_INTERVAL)
    _number(parts, "COUNT", 1, MAX_COUNT)
    hours = _numbers(parts, "BYHOUR", 0, 23)
    minutes = _numbers(parts, "BYMINUTE", 0, 59)
    if max(len(hours), 1) * max(len(minutes), 1) > MAX_TIMES_PER_DAY:
        raise InvalidRule(f"rrule may give at most {MAX_TIMES_PER_DAY} times a day (BYHOUR x BYMINUTE)")
    _numbers(parts, "BYMONTH", 1, 12)
    if any(d == 0 for d in _numbers(parts, "BYMONTHDAY", -31, 31)):
        raise InvalidRule("rrule BYMONTHDAY must be 1 to 31 or -31 to -1")
    if any(p == 0 for p in _numbers(parts, "BYSETPOS", -366, 366)):
        raise InvalidRule("rrule BYSETPOS must not be 0")
    _check_month_days(parts)
    return parts


def _number(parts: dict[str, str], name: str, low: int, high: int) -> None:
    if name in parts and not (parts[name].isdigit() and low <= int(parts[name]) <= high):
        raise InvalidRule(f"rrule {name} must be {low}-{high}")


def _numbers(parts: dict[str, str], name: str, low: int, high: int) -> list[int]:
    if name not in parts:
        return []
    try:
        values = [int(v) for v in parts[name].split(",")]
    except ValueError:
        raise InvalidRule(f"rrule {name} must be a list of numbers") from None
    if not all(low <= v <= high for v in values):
        raise InvalidRule(f"rrule {name} values must be {low} to {high}")
    return values


def _shift_years(year: int) -> int:
    """Whole 400-year cycles that move `year` into the last 400-800 years before 9999."""
    return max(0, (_SHIFT_TO - year) // _CYCLE_YEARS) * _CYCLE_YEARS


def _shifted_rule(parts: dict[str, str], dtstart: datetime, years: int, zone: tzinfo | None) -> rrule:
    """The rule on naive wall-clock times, `years` later (a multiple of 400: the same calendar)."""
    fields = dict(parts)
    if "UNTIL" in fields:
        until = datetime.strptime(fields["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        local = until.astimezone(zone).replace(tzinfo=None) if zone else until.replace(tzinfo=None)
        if local.year + years <= datetime.max.year:
            fields["UNTIL"] = local.replace(year=local.year + years).strftime("%Y%m%dT%H%M%S")
        else:  # an UNTIL past the walk's end (only in rules stored before UNTIL was bounded)
            del fields["UNTIL"]
    text = ";".join(f"{name}={value}" for name, value in fields.items())
    rule = rrulestr(text, dtstart=dtstart.replace(year=dtstart.year + years))
    assert isinstance(rule, rrule)  # one RRULE line, never an rruleset
    return rule


def _explicit(parts: dict[str, str], dtstart: datetime) -> dict[str, str]:
    """`parts` with the BY* values dateutil would take from DTSTART written out, so DTSTART can move."""
    out = dict(parts)
    if any(part in out for part in ("BYDAY", "BYMONTHDAY", "BYWEEKNO", "BYYEARDAY")):
        return out  # dateutil takes nothing from DTSTART then (rules stored before BYWEEKNO was refused)
    if out["FREQ"] == "YEARLY":
        out.setdefault("BYMONTH", str(dtstart.month))
        out["BYMONTHDAY"] = str(dtstart.day)
    elif out["FREQ"] == "MONTHLY":
        out["BYMONTHDAY"] = str(dtstart.day)
    elif out["FREQ"] == "WEEKLY":
        out["BYDAY"] = _WEEKDAYS[dtstart.weekday()]
    return out


def _jump(parts: dict[str, str], dtstart: datetime, target: datetime) -> datetime:
    """A DTSTART whole periods after `dtstart`, at least one full period before `target`.

    Every period the rule visits from there is one it visited from `dtstart`, with the same
    occurrences (naive wall-clock times). Without COUNT only: COUNT counts from the first.
    """
    interval = int(parts.get("INTERVAL", "1"))
    freq = parts["FREQ"]
    if freq in ("DAILY", "WEEKLY"):
        step = interval * (7 if freq == "WEEKLY" else 1)
        periods = (target.date() - dtstart.date()).days // step - 1
        return dtstart + timedelta(days=step * periods) if periods > 0 else dtstart
    if freq == "MONTHLY":
        months = (target.year - dtstart.year) * 12 + target.month - dtstart.month
        periods = months // interval - 1
        if periods <= 0:
            return dtstart
        index = dtstart.year * 12 + dtstart.month - 1 + periods * interval
        return dtstart.replace(year=index // 12, month=index % 12 + 1, day=1)
    periods = (target.year - dtstart.year) // interval - 1
    if periods <= 0:
        return dtstart
    return dtstart.replace(year=dtstart.year + periods * interval, month=1, day=1)


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
    point in time: it is in the range when it starts in it. Cost: the periods of the window plus
    the walk to the next occurrence (see the module docstring), not the event's age.
    """
    duration = (ends_at - starts_at) if ends_at is not None else timedelta(0)
    found: list[Occurrence] = []

    def take(occ: datetime) -> bool:
        """Keep `occ` if it overlaps; False once past the window or the limit."""
        if occ >= end or len(found) >= limit:
            return False
        if occ + duration > start or (duration == timedelta(0) and occ >= start):
            found.append(Occurrence(occ, occ + duration if ends_at is not None else None))
        return True

    if canonical is None:
        take(starts_at)
        return found
    zone = starts_at.tzinfo
    parts = dict(item.split("=", 1) for item in canonical.split(";"))
    first = starts_at.replace(tzinfo=None)
    # The window in wall-clock time, a day wider on each side for DST and offset changes.
    low = (start - duration).astimezone(zone).replace(tzinfo=None) - timedelta(days=1)
    high = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    if "COUNT" not in parts:
        parts = _explicit(parts, first)
        first = _jump(parts, first, low)
    years = _shift_years(high.year)
    rule = _shifted_rule(parts, first, years, zone)
    since = max(low, first)
    for shifted in rule.xafter(since.replace(year=since.year + years), inc=True):
        local = shifted.replace(year=shifted.year - years)
        if local > high:
            break
        if not take(local.replace(tzinfo=zone)):
            break
    found.sort(key=lambda o: o.starts_at)
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
    check_year(moment, "rrule UNTIL")
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _check_month_days(parts: dict[str, str]) -> None:
    """Refuse BYMONTH + BYMONTHDAY pairs that never exist (Feb 30) without walking 400 years."""
    if "BYMONTH" not in parts or "BYMONTHDAY" not in parts:
        return
    months = [int(m) for m in parts["BYMONTH"].split(",")]
    days = [int(d) for d in parts["BYMONTHDAY"].split(",")]
    leap = 2024
    for month in months:
        length = calendar.monthrange(leap, month)[1]
        if any(1 <= abs(d) <= length for d in days):
            return
    raise InvalidRule("rrule never occurs: no such day in those months")


def local_day(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of `day` in `zone`, as aware datetimes."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end
