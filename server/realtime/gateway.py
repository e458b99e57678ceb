"""`GET /v1/realtime`: the WebSocket route. It only moves bytes and events between the socket and the core.

Auth: `Authorization: Bearer <access token>`, or for browsers the subprotocol
`openai-insecure-api-key.<token>` (echoed back in the accept). No or bad token, or an `Origin` that is
neither allowed (`allowed_origins`) nor this host: the upgrade is refused with 403. Audio arrives
base64 in `input_audio_buffer.append` or, as a fast path for our own clients, as *binary* WebSocket
frames of raw audio in the session's input format. Each text frame is parsed whole
(`server.realtime.protocol.parse`) and handed to its handler from a table; a bad one gets an `error`
event and the call goes on. Limits: message size (`realtime_max_message_bytes`: an `error` event,
then close 1009 with the reason; uvicorn's own `ws_max_size` sits above it, see
`server.__main__.uvicorn_options`), call length, open calls per user, and an idle caller is asked
once whether they are still there, then the call ends (close code 1000). While the server drains
(SIGTERM), new calls get HTTP 503 and open ones end with close code 1012 at their first quiet moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from pipeline import prompts
from pipeline.conversation import Conversation
from pipeline.engines.base import ChatContext
from pipeline.events import (
    ItemCreated,
    ItemDeleted,
    ItemTruncated,
    OutputEvent,
    ReplyAudio,
    ResponseDone,
    SpeechStarted,
    TranscriptFinal,
)
from pipeline.reminders import ReminderClock
from pipeline.tools import TOOL_SPECS
from pipeline.turn_end import SpeakerHabits
from pipeline.turns import CallConfig
from server.companion.call import CallCompanion
from server.realtime import protocol as p
from server.realtime.calls import CallRegistry, OpenCall, TooManyCalls
from server.realtime.encoder import Encoder, event_id
from server.realtime.metrics import CallMetrics
from server.realtime.session import Session, SessionConflict
from server.realtime.store import CallStore, load_user_facts
from server.security import InvalidToken, decode_access_token
from server.services import Services
from storage.models import User

log = logging.getLogger(__name__)
router = APIRouter()
SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
#: Reminders wait for this much quiet after the caller or we last spoke: never over the caller.
REMINDER_QUIET_S = 1.5
IDLE_PROMPTS = {
    "ko": "아직 거기 계세요? 편하실 때 말씀해 주세요.",
    "en": "Are you still there? Take your time.",
}
#: While draining, a call ends once it has been quiet this long (the last reply fully sent).
DRAIN_QUIET_S = 0.3


def _token(ws: WebSocket) -> tuple[str | None, str | None]:
    """The bearer token and the subprotocol to echo (when the token came that way)."""
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), None
    for proto in ws.scope.get("subprotocols") or []:
        if proto.startswith(SUBPROTOCOL_PREFIX):
            return proto[len(SUBPROTOCOL_PREFIX) :], proto
    return None, None


def _origin_ok(ws: WebSocket, allowed: list[str]) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser: Origin is no authentication anyway
    if origin in allowed or "*" in allowed:
        return True
    return urlsplit(origin).netloc == ws.headers.get("host", "")


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    services: Services = ws.app.state.services
    settings = services.settings
    if services.draining:
        await _refuse_while_draining(ws)
        return
    token, subprotocol = _token(ws)
    if not _origin_ok(ws, settings.allowed_origins) or token is None:
        await ws.close(code=1008)  # before accept: the client sees HTTP 403
        return
    try:
        user_id = decode_access_token(settings, token)
    except InvalidToken:
        await ws.close(code=1008)
        return
    async with services.sessions() as s:
        user = await s.get(User, user_id)
    if user is None:
        await ws.close(code=1008)
        return
    await ws.accept(subprotocol=subprotocol)
    call = Call(ws, services, user, beta=ws.headers.get("openai-beta", "").startswith("realtime=v1"))
    await call.run()


async def _refuse_while_draining(ws: WebSocket) -> None:
    """This process is shutting down: HTTP 503 before the upgrade, so the client tries another gateway."""
    body = {"detail": "This server is restarting; please connect again."}
    await ws.send_denial_response(JSONResponse(body, status_code=503, headers={"Retry-After": "1"}))


class Call:
    """One open call: the socket, the session, the conversation core, and persistence."""

    def __init__(self, ws: WebSocket, services: Services, user: User, *, beta: bool) -> None:
        assert services.calls is not None and services.metrics is not None  # server.realtime.start
        self.ws, self.services, self.user, self.beta = ws, services, user, beta
        self.settings = services.settings
        self.session = Session()
        self.encoder = Encoder(beta=beta, session=self.session)
        self.registry: CallRegistry = services.calls
        self.metrics: CallMetrics = services.metrics
        self._handlers: dict[type[p.ClientEvent], Callable[[Conversation, Any], Awaitable[None]]] = {
            p.AudioAppend: self._append,
            p.AudioCommit: self._commit,
            p.AudioClear: self._clear,
            p.UpdateSession: self._update_session,
            p.CreateItem: self._create_item,
            p.CreateFunctionCall: self._create_function_call,
            p.CreateFunctionOutput: self._create_function_output,
            p.TruncateItem: self._truncate,
            p.DeleteItem: self._delete,
            p.CreateResponse: self._create_response,
            p.CancelResponse: self._cancel_response,
        }
        self.store = CallStore(services.sessions, user.id, retry_for_s=self.settings.realtime_store_retry_s)
        self._send_lock = asyncio.Lock()
        self._persist: asyncio.Queue[tuple[OutputEvent, dict[str, float | str]] | None] = asyncio.Queue()
        self.conv: Conversation | None = None
        self.companion: CallCompanion | None = None
        self.reminders: ReminderClock | None = None
        self._opening: str | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()  # emergency alerts being stored
        # Barge-in, measured where bytes leave: when speech_started went out, and when each
        # reply's first and last audio went out (monotonic seconds).
        self._speech_started_at: float | None = None
        self._audio_sent: dict[str, tuple[float, float]] = {}

    @property
    def language(self) -> str:
        return self._language(self.session)

    def _language(self, session: Session) -> str:
        """The session's language, else the caller's profile language."""
        return session.language or self.user.language or "ko"

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    async def run(self) -> None:
        entry = OpenCall(self.user.id, None, self.send)
        try:
            await self.registry.open(entry)
        except TooManyCalls as e:
            await self.send(self.encoder.error(str(e), code="too_many_calls"))
            await self.ws.close(code=1008)
            return
        self.metrics.calls_open.inc()
        self.metrics.calls_total.inc()
        saver: asyncio.Task[None] | None = None
        engines: Any = None
        try:
            engines = await self.services.get_engines()
            facts = await load_user_facts(self.services.sessions, self.user)
            entry.conversation_id = await self.store.start(self.language)
            companion = CallCompanion(self.services, self.user, language=self.language, push=self._push)
            companion.conversation_id = entry.conversation_id
            self.companion = companion
            self.reminders = await companion.reminders()
            self._opening = self.reminders.opening(datetime.now(self.reminders.zone))
            self.conv = Conversation(
                engines, self._context(facts), self._config(self.session), tools=companion.tools
            )
            self.conv.learn_habits(SpeakerHabits.from_json(self.user.speaker_habits))
            await self.send(self.encoder.session_event("session.created"))
            saver = asyncio.create_task(self._save())  # outlives the call's tasks: every turn is stored
            async with asyncio.timeout(self.settings.realtime_max_call_s), asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._read())
                tg.create_task(self._write())
                tg.create_task(self._watch())
                tg.create_task(self._end_when_draining())
                await reader
                raise _Hangup
        except* _Hangup:
            pass
        except* TimeoutError:
            await self._close(1000, "maximum call length reached")
        except* WebSocketDisconnect:
            pass
        finally:
            if self.conv is not None:
                await self.conv.aclose()
                while not self.conv.out.empty():  # e.g. the reply cancelled by the hang-up
                    self._keep(self.conv.out.get_nowait())
            self._persist.put_nowait(None)
            # The call is over for the caller and the limits; what it said may still be on its way
            # to a database that is briefly away (the store retries for `realtime_store_retry_s`).
            await self.registry.close(entry)
            self.metrics.calls_open.dec()
            if saver is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(saver, self.settings.realtime_store_retry_s + 30)
            with contextlib.suppress(Exception):
                await self.store.end(self.conv.habits.as_json() if self.conv is not None else None)
            if self.companion is not None and engines is not None and self.settings.call_summaries:
                # New memories and a summary, in the background: the hang-up does not wait for them.
                self.companion.after_call(engines.llm)

    def _context(self, facts: dict[str, Any]) -> ChatContext:
        name = self.user.display_name or ""
        prompt = prompts.system_prompt(self.language, name, facts, tools=True)
        if self.session.instructions:
            prompt = f"{prompt}\n{self.session.instructions}"
        return ChatContext(
            system_prompt=prompt, language=self.language, user_name=name, facts=facts, tools=TOOL_SPECS
        )

    def _config(self, session: Session) -> CallConfig:
        """The core's configuration for `session` (turn-detection defaults are the core's own)."""
        s = self.settings
        c = CallConfig(
            language=self._language(session),
            input_rate=session.input_format.rate,
            output_rate=session.output_format.rate,
            turn_detection=session.turn_detection is not None,
            min_silence_ms=s.realtime_min_silence_ms,
            max_silence_ms=s.realtime_max_silence_ms,
            end_finished_ms=s.realtime_finished_silence_ms,
            end_doubt_ms=s.realtime_doubt_silence_ms,
            end_word_p=dict(s.realtime_end_word_p),
            end_alt_p=dict(s.realtime_end_alt_p),
            speed=session.speed or self.user.speech_rate or 1.0,
            speculative=s.realtime_speculative,
            early_pause_ms=s.realtime_early_pause_ms,
            lead_ms=float(s.realtime_audio_lead_ms),
            transcript_timeout_s=s.realtime_transcript_timeout_s,
            max_input_audio_s=s.realtime_max_input_audio_s,
            emergency_number=s.emergency_number,
        )
        c.apology = prompts.apology(c.language)
        if (td := session.turn_detection) is not None:
            c.threshold, c.prefix_padding_ms = td.threshold, td.prefix_padding_ms
            c.silence_duration_ms = td.silence_duration_ms
            c.create_response, c.interrupt_response = td.create_response, td.interrupt_response
        return c

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    # --- socket -> core ------------------------------------------------------------------------

    async def _read(self) -> None:
        limit = self.settings.realtime_max_message_bytes
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            assert self.conv is not None
            data: str | bytes | None = msg.get("text")
            if data is None:
                data = msg.get("bytes") or b""
            if (size := _size(data, limit)) > limit:
                await self.send(
                    self.encoder.error(
                        f"A message of {size} bytes is over the limit of {limit} bytes; the call ends.",
                        code="message_too_large",
                    )
                )
                await self._close(1009, f"message over {limit} bytes")
                return
            if isinstance(data, bytes):  # the binary fast path: raw audio in the input format
                self.conv.push_audio(self.session.input_format.decode(data))
                continue
            try:
                event = p.parse(data)
            except p.ProtocolError as e:
                await self.send(self.encoder.error(str(e), code=e.code, param=e.param, event_id_=e.event_id))
                continue
            try:
                await self._handlers[type(event)](self.conv, event)
            except WebSocketDisconnect:
                raise
            except Exception:
                # A fault of ours on a checked event: logged in full, reported, and the call goes on
                # (the fuzz test counts any of these as a failure).
                log.exception("realtime: handling %s failed", event.type)
                await self.send(
                    self.encoder.error(
                        "The server could not handle this event.",
                        type="server_error",
                        code="internal_error",
                        event_id_=event.event_id,
                    )
                )

    # --- client events (one handler per event type, each given a fully checked event) ---------

    async def _append(self, conv: Conversation, e: p.AudioAppend) -> None:
        conv.push_audio(self.session.input_format.decode(e.audio))

    async def _commit(self, conv: Conversation, e: p.AudioCommit) -> None:
        conv.commit(e.event_id)

    async def _clear(self, conv: Conversation, e: p.AudioClear) -> None:
        conv.clear_input()

    async def _update_session(self, conv: Conversation, e: p.UpdateSession) -> None:
        """Apply the whole update or none of it: the event was checked before anything changes."""
        try:
            session = self.session.updated(e.session)
        except SessionConflict as err:
            await self.send(
                self.encoder.error(str(err), code="invalid_value", param=err.param, event_id_=e.event_id)
            )
            return
        c = self._config(session)
        conv.configure(
            language=c.language,
            input_rate=c.input_rate,
            output_rate=c.output_rate,
            turn_detection=c.turn_detection,
            threshold=c.threshold,
            prefix_padding_ms=c.prefix_padding_ms,
            silence_duration_ms=c.silence_duration_ms,
            create_response=c.create_response,
            interrupt_response=c.interrupt_response,
            speed=c.speed,
            apology=c.apology,
        )
        self.session = self.encoder.session = session
        conv.context = self._context(dict(conv.context.facts))
        conv.client_tools = session.tools
        if self.companion is not None:
            self.companion.set_language(self.language)
        await self.send(self.encoder.session_event("session.updated"))

    async def _create_item(self, conv: Conversation, e: p.CreateItem) -> None:
        conv.add_text(e.item.role, e.item.text, e.item.id)

    async def _create_function_call(self, conv: Conversation, e: p.CreateFunctionCall) -> None:
        item = e.item
        conv.add_function_call(item.call_id, item.name, item.arguments, item.id, e.event_id)

    async def _create_function_output(self, conv: Conversation, e: p.CreateFunctionOutput) -> None:
        conv.add_function_output(e.item.call_id, e.item.output, e.item.id, e.event_id)

    async def _truncate(self, conv: Conversation, e: p.TruncateItem) -> None:
        conv.truncate(e.item_id, e.content_index, e.audio_end_ms, e.event_id)

    async def _delete(self, conv: Conversation, e: p.DeleteItem) -> None:
        conv.delete_item(e.item_id, e.event_id)

    async def _create_response(self, conv: Conversation, e: p.CreateResponse) -> None:
        """A reply; `response.tools` / `tool_choice` stand in for the session's in this one."""
        tools = None
        if e.response is not None and e.response.model_fields_set & {"tools", "tool_choice"}:
            try:
                tools = e.response.applied(self.session.tools, "response.tool_choice")
            except SessionConflict as err:
                await self.send(
                    self.encoder.error(str(err), code="invalid_value", param=err.param, event_id_=e.event_id)
                )
                return
        conv.create_response(e.event_id, client_tools=tools)

    async def _cancel_response(self, conv: Conversation, e: p.CancelResponse) -> None:
        conv.cancel_response(e.event_id)

    # --- core -> socket ------------------------------------------------------------------------

    async def _write(self) -> None:
        assert self.conv is not None
        conv = self.conv
        while True:
            event = await conv.next_event()  # without reply audio a barge-in made stale
            if not isinstance(event, ReplyAudio):
                if isinstance(event, ResponseDone):
                    event = self._with_barge_in_timing(event)
                self._keep(event)
            for wire in self.encoder.encode(event):
                await self.send(wire)
            now = time.monotonic()
            if isinstance(event, SpeechStarted):
                self._speech_started_at = now
            elif isinstance(event, ReplyAudio):
                first, _ = self._audio_sent.get(event.item_id, (now, now))
                self._audio_sent[event.item_id] = (first, now)

    def _with_barge_in_timing(self, event: ResponseDone) -> ResponseDone:
        """Add `barge_in_stop_ms` to a reply cut by the caller speaking over it.

        That is the time from `speech_started` leaving the server to the reply's last audio byte
        leaving it (0 when nothing more was sent after speech_started: the usual case).
        """
        first_last = self._audio_sent.pop(event.item_id, None)
        started = self._speech_started_at
        if event.status != "cancelled" or first_last is None or started is None or started < first_last[0]:
            return event
        stop_ms = max(0.0, (first_last[1] - started) * 1000.0)
        return replace(event, timings={**event.timings, "barge_in_stop_ms": round(stop_ms, 1)})

    def _keep(self, event: OutputEvent) -> None:
        """Queue what the database keeps (turns, truncations) and count finished replies."""
        assert self.conv is not None
        if isinstance(event, TranscriptFinal | ResponseDone | ItemTruncated | ItemDeleted) or (
            isinstance(event, ItemCreated) and event.text
        ):
            self._persist.put_nowait((event, self.conv.turn_timings(event.item_id)))
        if isinstance(event, ResponseDone):
            self.metrics.observe_response(event.status, event.timings)
        caller_words = isinstance(event, TranscriptFinal) or (
            isinstance(event, ItemCreated) and event.role == "user" and event.text
        )
        if caller_words and self.companion is not None:
            # Words of emergency: the core already answers calmly; here the alert is stored and the
            # family told, beside the call (never in its way).
            task = asyncio.create_task(self.companion.emergency_reply(event.text))  # type: ignore[union-attr]
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _push(self, event: dict[str, Any]) -> None:
        """A custom server event from the companion's tools (`silvertalk.photo.show`)."""
        await self.send({**event, "event_id": event_id()})

    async def _save(self) -> None:
        """Store turns off the sending path: a slow database never delays the caller's audio."""
        while (entry := await self._persist.get()) is not None:
            event, user_timings = entry
            try:
                if isinstance(event, TranscriptFinal):
                    await self.store.add_turn(event.item_id, "user", event.text, "completed", user_timings)
                elif isinstance(event, ItemCreated):  # a text item sent by the client
                    await self.store.add_turn(event.item_id, event.role, event.text, "completed", {})
                elif isinstance(event, ResponseDone) and event.message:  # (not a silent call of a tool)
                    await self.store.add_turn(
                        event.item_id, "assistant", event.text, event.status, event.timings
                    )
                elif isinstance(event, ItemTruncated):
                    await self.store.truncate(event.item_id, event.text)
                elif isinstance(event, ItemDeleted):
                    await self.store.delete(event.item_id)
            except Exception:
                log.exception("could not store a turn")

    async def _watch(self) -> None:
        """Idle caller: ask once whether they are still there, then hang up."""
        assert self.conv is not None
        conv, s = self.conv, self.settings
        prompt_at: float | None = None
        while True:
            await asyncio.sleep(min(1.0, s.realtime_idle_prompt_s / 4))
            now = time.monotonic()
            if prompt_at is not None and conv.caller_idle_for(now) < now - prompt_at:
                prompt_at = None  # they came back
            self._remind(conv, now)
            if prompt_at is None and conv.idle_for(now) >= s.realtime_idle_prompt_s:
                prompt_at = now
                text = IDLE_PROMPTS.get(prompts.lang_key(self.language), IDLE_PROMPTS["en"])
                conv.create_response(fixed_text=text)
            elif (
                prompt_at is not None
                and not conv.busy
                and (now - prompt_at >= s.realtime_idle_hangup_s - s.realtime_idle_prompt_s)
            ):
                await self.send(
                    {"type": "silvertalk.call.ending", "event_id": "event_idle", "reason": "idle"}
                )
                await self._close(1000, "idle")
                raise _Hangup

    def _remind(self, conv: Conversation, now: float) -> None:
        """Say today's plan once the call is quiet, and each reminder as it comes due, between
        turns: never while the caller speaks or we answer, and after a moment of quiet."""
        if self.reminders is None or conv.busy or conv.idle_for(now) < REMINDER_QUIET_S:
            return
        lines = [self._opening] if self._opening else []
        self._opening = None
        lines += self.reminders.due(datetime.now(self.reminders.zone))
        if lines:
            conv.create_response(fixed_text=" ".join(lines))

    async def _end_when_draining(self) -> None:
        """The server is draining: end the call with 1012 (the client reconnects elsewhere).

        At the call's first quiet moment (no one speaking, no reply in flight, nothing left to
        send, for DRAIN_QUIET_S on end), or when the grace period runs out, whichever comes first.
        """
        assert self.conv is not None
        conv, registry = self.conv, self.registry
        await registry.draining.wait()
        quiet_since: float | None = None
        while (now := time.monotonic()) < registry.drain_deadline:
            if conv.busy or not conv.out.empty():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= DRAIN_QUIET_S:
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):
            await self.send(
                {"type": "silvertalk.call.ending", "event_id": "event_restart", "reason": "server_restarting"}
            )
        await self._close(1012, "server restarting")
        raise _Hangup


class _Hangup(Exception):
    """The call ends from our side (idle, or the reader saw the socket close)."""


def _size(data: str | bytes, limit: int) -> int:
    """The message's size in bytes (UTF-8 for text), counted only when it may be over `limit`."""
    if isinstance(data, bytes) or len(data) > limit or 4 * len(data) <= limit:
        return len(data)  # a character is 1 to 4 bytes
    return len(data.encode("utf-8", "surrogatepass"))
