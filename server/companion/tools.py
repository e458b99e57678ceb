"""`CompanionTools`: the `pipeline.tools.ToolRunner` over one caller's own rows.

The gateway builds one per call and hands it to the conversation core. Every query filters on the
caller's `user_id`, so another user's id is simply "not found". Arguments are validated first
(`server.companion.arguments`); a bad call, an unknown tool or a refusal is an `error_result` the
model can recover from, never an exception. Tools that change things (`pipeline.tools.CHANGES`)
check everything, then, unless `confirmed`, answer with the question to ask and change nothing.
`show_photo` also pushes `silvertalk.photo.show` to the caller's client through `push`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import col

from pipeline.prompts import lang_key
from pipeline.tools import CHANGES, PHOTO_SHOW_EVENT, TOOL_NAMES, error_result
from server import recurrence
from server.calendar import occurrences_between
from server.companion import arguments as a
from server.companion import search
from server.generation.service import GenerationRefused, GenerationRequest, start_generation
from server.photostore import photo_public, user_zone
from storage.models import Event, Memory, MemoryPhoto, Photo, User

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.companion")

Push = Callable[[dict[str, Any]], Awaitable[None]]
#: Events one `list_events` answer may hold (a month of a daily pill is 31).
MAX_LISTED = 60


class Refused(Exception):
    """A call that cannot be done as asked; the message goes back to the model."""


def title_key(title: str) -> str:
    """A title compared for duplicates: lower case, letters and digits only."""
    return re.sub(r"\W+", "", title.casefold())


def _memory_brief(m: Memory) -> dict[str, Any]:
    body = m.body if len(m.body) <= 400 else m.body[:400] + "…"
    return {
        "memory_id": str(m.id),
        "title": m.title,
        "body": body,
        "happened_on": m.happened_on,
        "place": m.place,
        "people": m.people,
    }


class CompanionTools:
    """Runs the companion's tools for `user` in `language` ("ko" or "en" phrasing)."""

    def __init__(self, services: Services, user: User, *, language: str, push: Push | None = None) -> None:
        self.services, self.user, self.push = services, user, push
        self.language = lang_key(language)
        self.zone = user_zone(user.time_zone)

    async def run(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate and run one call; see `pipeline.tools.ToolRunner`."""
        if name not in TOOL_NAMES:
            return error_result(f"there is no tool {name!r}; the tools are {', '.join(sorted(TOOL_NAMES))}")
        try:
            args = a.ARGS[name].model_validate(arguments if isinstance(arguments, dict) else {})
        except ValidationError as e:
            return error_result(f"{name} arguments are wrong: {a.explain(e)}")
        try:
            result: dict[str, Any] = await getattr(self, f"_{name}")(args)
        except Refused as e:
            return error_result(str(e))
        except Exception:  # a bug or a database failure must not end the call
            log.exception("tool %s failed for user %s", name, self.user.id)
            return error_result(f"{name} failed on the server; say sorry and do not try it again now")
        if name in CHANGES and result.get("needs_confirmation"):
            result = {"ok": False, **result}
        return result

    # --- calendar ------------------------------------------------------------------------------

    async def _list_events(self, args: a.ListEventsArgs) -> dict[str, Any]:
        first = args.date or datetime.now(self.zone).date()
        last = args.end_date or first
        start = recurrence.local_day(first, self.zone)[0]
        end = recurrence.local_day(last, self.zone)[1]
        async with self.services.sessions() as s:
            found, truncated = await occurrences_between(s, self.user, start, end, MAX_LISTED)
        events = []
        for occ in found:
            local = occ.starts_at.astimezone(self.zone)
            item: dict[str, Any] = {"title": occ.title, "date": local.date().isoformat()}
            item["time"] = None if occ.all_day else local.strftime("%H:%M")
            if occ.recurring:
                item["repeats"] = True
            if occ.remind_minutes_before is not None:
                item["remind_minutes_before"] = occ.remind_minutes_before
            events.append(item)
        return {
            "ok": True,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "events": events,
            "more_not_listed": truncated,
        }

    async def _add_event(self, args: a.AddEventArgs) -> dict[str, Any]:
        start = args.start if args.start.tzinfo else args.start.replace(tzinfo=self.zone)
        end = None
        if args.end is not None:
            end = args.end if args.end.tzinfo else args.end.replace(tzinfo=self.zone)
            if end < start:
                raise Refused("end must not be before start")
        if start < datetime.now(self.zone) - timedelta(minutes=5) and not args.repeat:
            raise Refused(f"{start:%Y-%m-%d %H:%M} has already passed; ask the caller which day they mean")
        offset = int((start.utcoffset() or timedelta(0)).total_seconds() // 60)
        rule = None
        if args.repeat:
            zone = recurrence.event_zone(offset, self.user.time_zone, start)
            try:
                rule = await asyncio.to_thread(recurrence.normalize, args.repeat, start.astimezone(zone))
            except recurrence.InvalidRule as e:
                raise Refused(f"repeat is not a valid RFC 5545 rule: {e}") from None
        local = start.astimezone(self.zone)
        if not args.confirmed:
            return {
                "needs_confirmation": True,
                "ask": a.ask_add_event(self.language, args.title, local, rule),
            }
        event = Event(
            user_id=self.user.id,
            title=args.title,
            starts_at=start,
            ends_at=end,
            tz_offset_minutes=offset,
            rrule=rule,
            remind_minutes_before=args.remind_minutes_before,
        )
        async with self.services.sessions() as s:
            s.add(event)
            await s.commit()
        return {
            "ok": True,
            "saved": True,
            "event_id": str(event.id),
            "title": event.title,
            "start": local.isoformat(timespec="minutes"),
            "repeat": rule,
            "remind_minutes_before": args.remind_minutes_before,
        }

    # --- memories ------------------------------------------------------------------------------

    async def _find_memories(self, args: a.FindMemoriesArgs) -> dict[str, Any]:
        words = search.terms(args.words, args.place, *args.people)
        try:
            era = search.era_prefix(args.era)
        except ValueError as e:
            raise Refused(str(e)) from None
        if not words and not era:
            raise Refused("give words, people, a place or an era to search by")
        async with self.services.sessions() as s:
            found = await search.find(s, self.user.id, words, era=era)
        result: dict[str, Any] = {"ok": True, "memories": [_memory_brief(m) for m in found]}
        if not found:
            result["note"] = "no memory matches; say so honestly and perhaps ask about it"
        return result

    async def _save_memory(self, args: a.SaveMemoryArgs) -> dict[str, Any]:
        async with self.services.sessions() as s:
            same = await self._same_title(s, args.title)
            if same is not None:
                return {"ok": True, "already_saved": True, "memory_id": str(same.id), "title": same.title}
            if not args.confirmed:
                return {"needs_confirmation": True, "ask": a.ask_save_memory(self.language, args.title)}
            memory = Memory(
                user_id=self.user.id,
                title=args.title,
                body=args.body,
                people=args.people,
                place=args.place or None,
                happened_on=args.happened_on,
                source="conversation",
            )
            s.add(memory)
            await s.commit()
        return {"ok": True, "saved": True, "memory_id": str(memory.id), "title": memory.title}

    async def _same_title(self, s: Any, title: str) -> Memory | None:
        key = title_key(title)
        rows = await s.execute(sa.select(Memory).where(col(Memory.user_id) == self.user.id))
        return next((m for m in rows.scalars() if title_key(m.title) == key), None)

    async def _memory_by(self, s: Any, memory_id: Any, words: str | None) -> Memory:
        """The caller's memory by id, or the best match for `words`; Refused when there is none."""
        if memory_id is not None:
            memory = await s.get(Memory, memory_id)
            if memory is None or memory.user_id != self.user.id:
                raise Refused("no memory of the caller has that memory_id")
            return memory  # type: ignore[no-any-return]
        terms = search.terms(words)
        if not terms:
            raise Refused("give a memory_id, or words to find the memory by")
        found = await search.find(s, self.user.id, terms, limit=1)
        if not found:
            raise Refused("no memory matches those words; ask the caller which memory they mean")
        return found[0]

    # --- photos and pictures -------------------------------------------------------------------

    async def _show_photo(self, args: a.ShowPhotoArgs) -> dict[str, Any]:
        memory: Memory | None = None
        async with self.services.sessions() as s:
            if args.photo_id is not None:
                photo = await s.get(Photo, args.photo_id)
                if photo is None or photo.user_id != self.user.id:
                    raise Refused("no photo of the caller has that photo_id")
            else:
                memory = await self._memory_by(s, args.memory_id, args.words)
                photo = await s.scalar(
                    sa.select(Photo)
                    .join(MemoryPhoto, col(MemoryPhoto.photo_id) == col(Photo.id))
                    .where(col(MemoryPhoto.memory_id) == memory.id, col(Photo.user_id) == self.user.id)
                    .order_by(col(MemoryPhoto.position))
                    .limit(1)
                )
                if photo is None:
                    raise Refused(f"the memory {memory.title!r} has no photo to show")
        shown = photo_public(photo)
        event: dict[str, Any] = {"type": PHOTO_SHOW_EVENT, "photo": shown}
        if memory is not None:
            event["memory"] = {"id": str(memory.id), "title": memory.title}
        if self.push is not None:
            await self.push(event)
        return {
            "ok": True,
            "shown": self.push is not None,
            "photo_id": str(photo.id),
            "caption": photo.caption,
            "memory_title": memory.title if memory else None,
            "urls": shown["urls"],
        }

    async def _make_picture(self, args: a.MakePictureArgs) -> dict[str, Any]:
        async with self.services.sessions() as s:
            memory = await self._memory_by(s, args.memory_id, args.words)
            if not args.confirmed:
                return {"needs_confirmation": True, "ask": a.ask_make_picture(self.language, memory.title)}
            try:
                gen = await start_generation(
                    s, self.services, self.user, GenerationRequest(kind="image", memory_id=memory.id)
                )
            except GenerationRefused as e:
                raise Refused(f"the picture cannot be made now: {e}") from None
        return {
            "ok": True,
            "started": True,
            "generation_id": str(gen.id),
            "memory_title": memory.title,
            "note": "it takes about a minute and then appears in the caller's gallery",
        }
