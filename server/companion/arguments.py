"""The companion tools' arguments, validated (pydantic), and the confirmation questions they ask.

Models ignore extra fields (models add them now and then) but refuse wrong types and values with
messages a model can act on. Times in `add_event` are the caller's local wall clock
("2026-11-28T10:00"); an offset, if the model adds one, is kept.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.schemas.events import REMIND_MAX_MINUTES
from server.schemas.memories import MAX_PEOPLE, check_happened_on, check_people

MAX_RANGE_DAYS = 31


class Args(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class Confirmable(Args):
    confirmed: bool = False


class ListEventsArgs(Args):
    date: dt.date | None = None
    end_date: dt.date | None = None

    @model_validator(mode="after")
    def _range(self) -> ListEventsArgs:
        if self.end_date is not None:
            if self.date is None:
                raise ValueError("end_date needs date")
            if not self.date <= self.end_date <= self.date + dt.timedelta(days=MAX_RANGE_DAYS):
                raise ValueError(f"end_date must be from date to {MAX_RANGE_DAYS} days after it")
        return self


class AddEventArgs(Confirmable):
    title: str = Field(min_length=1, max_length=200)
    start: dt.datetime
    end: dt.datetime | None = None
    repeat: str | None = Field(default=None, max_length=500)
    remind_minutes_before: int | None = Field(default=None, ge=0, le=REMIND_MAX_MINUTES)


class FindMemoriesArgs(Args):
    words: str | None = Field(default=None, max_length=500)
    people: list[str] = Field(default_factory=list, max_length=20)
    place: str | None = Field(default=None, max_length=200)
    era: str | None = Field(default=None, max_length=20)


class SaveMemoryArgs(Confirmable):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=20000)
    people: list[str] = Field(default_factory=list, max_length=MAX_PEOPLE)
    place: str | None = Field(default=None, max_length=200)
    happened_on: str | None = Field(default=None, max_length=10)

    _happened_on = field_validator("happened_on")(check_happened_on)
    _people = field_validator("people")(check_people)


class ShowPhotoArgs(Args):
    photo_id: uuid.UUID | None = None
    memory_id: uuid.UUID | None = None
    words: str | None = Field(default=None, max_length=500)


class MakePictureArgs(Confirmable):
    memory_id: uuid.UUID | None = None
    words: str | None = Field(default=None, max_length=500)


ARGS: dict[str, type[Args]] = {
    "list_events": ListEventsArgs,
    "add_event": AddEventArgs,
    "find_memories": FindMemoriesArgs,
    "save_memory": SaveMemoryArgs,
    "show_photo": ShowPhotoArgs,
    "make_picture": MakePictureArgs,
}


def explain(error: ValidationError) -> str:
    """A validation error in one line: `field: what is wrong; ...`."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


_KO_DAYS = "월화수목금토일"


def ask_add_event(language: str, title: str, start: dt.datetime, repeat: str | None) -> str:
    """ "Shall I put the dentist on Friday 28 November at 10:00?" in the caller's language."""
    if language == "ko":
        when = f"{start.month}월 {start.day}일 {_KO_DAYS[start.weekday()]}요일 {start.hour}시"
        when += f" {start.minute}분" if start.minute else ""
        again = " 반복해서" if repeat else ""
        return f"{when}에 '{title}' 일정을{again} 넣어 드릴까요?"
    again = " (repeating)" if repeat else ""
    return f"Shall I put {title} on {start:%A %d %B} at {start:%H:%M}{again}?"


def ask_save_memory(language: str, title: str) -> str:
    if language == "ko":
        return f"'{title}' 이야기를 추억으로 저장해 둘까요?"
    return f"Shall I save '{title}' as one of your memories?"


def ask_make_picture(language: str, title: str) -> str:
    if language == "ko":
        return f"'{title}' 추억으로 그림을 한 장 만들어 드릴까요?"
    return f"Shall I make a picture of '{title}'?"
