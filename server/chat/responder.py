"""The "chat.process" job: a voice message through transcription, the companion and speech.

`process` claims the message (a conditional UPDATE that bumps `attempts` and sets a lease, renewed
while the run is alive; a killed worker's lease runs out and the sweep sends the message again), then
advances it queued -> transcribing -> thinking -> speaking -> done, each step written only while
this run still holds it (`attempts` unchanged), and pushes every change to the user. The answer's
turns are stored in the same transaction that marks it done, so a message is answered once even
when two runs overlap. Engine failures end in `failed` with words the user can read; the user can
retry it. `sweep` re-sends messages whose job was lost or whose worker died (lease run out).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlmodel import col

from pipeline import EngineError, RetryableEngineError
from pipeline.engines.base import ChatContext, Message, TextDelta, Transcript
from pipeline.prompts import system_prompt
from pipeline.scheduler import EngineScheduler, Priority
from pipeline.sentences import SentenceSegmenter
from server.chat import ACTIVE, audio, updated_event
from server.chat.history import add_turns, load_history, messages_conversation
from server.jobs import JobsUnavailable
from server.jobs.push import push_to_user
from storage.models import ChatMessage, User, utcnow

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("silvertalk.chat")


class Lost(Exception):
    """This run no longer holds the message (another run took it over, or it was failed)."""


async def process(services: Services, message_id: str) -> None:
    mid = uuid.UUID(message_id)
    attempt = await _claim(services, mid)
    if attempt is None:
        return
    keeper = asyncio.create_task(_keep_lease(services, mid, attempt), name=f"lease-{mid}")
    try:
        await _answer(services, mid, attempt)
    except Lost:
        log.info("message %s: attempt %d was taken over", mid, attempt)
    except EngineError as e:
        log.warning("message %s: %s", mid, e)
        again = " Please try again in a moment." if isinstance(e, RetryableEngineError) else ""
        await _fail(services, mid, attempt, f"The companion could not answer: {e}.{again}")
    except Exception:
        log.exception("message %s: unexpected failure", mid)
        await _fail(services, mid, attempt, "Something went wrong on our side; please try again")
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


async def _keep_lease(services: Services, mid: uuid.UUID, attempt: int) -> None:
    """Renew the lease while this run works, so only a dead run's message is ever taken over."""
    lease = services.settings.chat_job_lease_s
    while True:
        await asyncio.sleep(lease / 3)
        async with services.sessions() as s:
            await s.execute(
                sa.update(ChatMessage)
                .where(
                    col(ChatMessage.id) == mid,
                    col(ChatMessage.attempts) == attempt,
                    col(ChatMessage.status).in_(ACTIVE),
                )
                .values(lease_until=utcnow() + timedelta(seconds=lease))
            )
            await s.commit()


async def _answer(services: Services, mid: uuid.UUID, attempt: int) -> None:

    settings = services.settings
    async with services.sessions() as s:
        msg = await s.get(ChatMessage, mid)
        user = await s.get(User, msg.user_id) if msg else None
    if msg is None or user is None:
        return
    # Only the router's part carries over (a retried message's last run measured its own).
    timings = {k: v for k, v in (msg.timings or {}).items() if k == "upload_ms"}
    timings["queued_ms"] = round(_ms_since(msg.created_at) - timings.get("upload_ms", 0.0), 1)
    engines = await services.get_engines()
    text = msg.text or ""
    if msg.input_kind == "audio" and msg.input_media_key:
        t = time.monotonic()
        pcm, _rate = await asyncio.to_thread(audio.from_wav, await services.media.get(msg.input_media_key))
        transcript = await _transcribe(engines, pcm, msg.language)
        timings["transcribe_ms"] = _ms(t)
        text = transcript.text.strip()
        if not text:
            await _fail(services, mid, attempt, "No words could be heard in the recording; please try again")
            return
        await _advance(services, mid, attempt, status="thinking", text=text, timings=timings)
    facts = await _facts(services, user)
    history = await load_history(services.sessions, user.id, settings.chat_history_turns)
    name = user.display_name or ""
    context = ChatContext(
        system_prompt=system_prompt(msg.language, name, facts),
        language=msg.language,
        user_name=name,
        facts=facts,
    )
    t = time.monotonic()
    parts: list[str] = []
    async for out in engines.llm.stream([*history, Message(role="user", text=text)], context):
        if isinstance(out, TextDelta):
            if not parts:
                timings["first_token_ms"] = _ms(t)
            parts.append(out.text)
    reply = "".join(parts).strip()
    timings["llm_ms"] = _ms(t)
    if not reply:
        await _fail(services, mid, attempt, "The companion gave no answer; please try again")
        return
    await _advance(services, mid, attempt, status="speaking", reply_text=reply, timings=timings)
    t = time.monotonic()
    wav = await _speak(engines, reply, msg.language, user.speech_rate)
    timings["tts_ms"] = _ms(t)
    key = f"chat/{mid}/reply-{attempt}.wav"
    await services.media.put(key, wav)
    await _finish(services, msg, attempt, text, reply, key, timings)


async def _transcribe(engines: Any, pcm: np.ndarray, language: str) -> Transcript:
    """The recording's words, decoded after any live call's final decode waiting on the same
    Whisper (its caller sits in silence), in line with their partials (`pipeline.scheduler`)."""
    async with EngineScheduler.of(engines.stt).turn(Priority.SOON):
        transcript: Transcript = await engines.stt.transcribe(pcm, language=language)
    return transcript


async def _speak(engines: Any, text: str, language: str, speed: float) -> bytes:
    """The reply as one WAV file, spoken a sentence at a time. Each sentence takes a turn on the
    voice after the first sentences of live calls' replies (their callers sit in silence), in line
    with their later ones (`pipeline.scheduler`): a message's reader waits seconds anyway."""
    tts = engines.tts_for(language)
    voice = EngineScheduler.of(tts)
    segmenter = SentenceSegmenter()
    chunks: list[np.ndarray] = []
    for sentence in [*segmenter.push(text), *segmenter.flush()]:
        async with voice.turn(Priority.SOON):
            async for pcm in tts.synthesize(sentence, language=language, speed=speed):
                chunks.append(pcm)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return await asyncio.to_thread(audio.to_wav, samples.astype(np.int16), int(tts.sample_rate))


async def _facts(services: Services, user: User) -> dict[str, Any]:
    from server.realtime.store import load_user_facts

    return await load_user_facts(services.sessions, user)


# --- the row -------------------------------------------------------------------------------------


async def _claim(services: Services, mid: uuid.UUID) -> int | None:
    """Take the message (queued, or held by a run whose lease ran out); the attempt number, or None."""
    settings = services.settings
    async with services.sessions() as s:
        msg = await s.get(ChatMessage, mid)
        if msg is None or msg.status not in ACTIVE:
            return None
        now = utcnow()
        if msg.status != "queued":
            if msg.lease_until is not None and msg.lease_until > now:
                return None  # another run holds it and is alive
            if msg.attempts >= settings.chat_max_attempts:
                await s.rollback()
                await _fail(
                    services, mid, msg.attempts, "The message could not be answered; please try again"
                )
                return None
        first = "transcribing" if msg.input_kind == "audio" else "thinking"
        seen, seen_status = msg.attempts, msg.status  # the ORM update below refreshes `msg`
        done = await s.execute(
            sa.update(ChatMessage)
            .where(
                col(ChatMessage.id) == mid,
                col(ChatMessage.attempts) == seen,
                col(ChatMessage.status) == seen_status,
            )
            .values(
                status=first,
                attempts=seen + 1,
                lease_until=now + timedelta(seconds=settings.chat_job_lease_s),
                error=None,
                updated_at=now,
            )
        )
        await s.commit()
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return None
    await _push(services, mid)
    return seen + 1


async def _advance(services: Services, mid: uuid.UUID, attempt: int, **values: Any) -> None:
    """Move on while still holding the message (the lease is renewed); raises Lost otherwise."""
    now = utcnow()
    values |= {"updated_at": now, "lease_until": now + timedelta(seconds=services.settings.chat_job_lease_s)}
    async with services.sessions() as s:
        done = await s.execute(
            sa.update(ChatMessage)
            .where(
                col(ChatMessage.id) == mid,
                col(ChatMessage.attempts) == attempt,
                col(ChatMessage.status).in_(ACTIVE),
            )
            .values(**values)
        )
        await s.commit()
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Lost
    await _push(services, mid)


async def _finish(
    services: Services,
    msg: ChatMessage,
    attempt: int,
    text: str,
    reply: str,
    key: str,
    timings: dict[str, float],
) -> None:
    """Done, with the answer's turns, in one transaction; a run that lost the message keeps nothing."""
    now = utcnow()
    timings["total_ms"] = _ms_since(msg.created_at)
    async with services.sessions() as s:
        conversation_id = await messages_conversation(s, msg.user_id, msg.language)
        done = await s.execute(
            sa.update(ChatMessage)
            .where(
                col(ChatMessage.id) == msg.id,
                col(ChatMessage.attempts) == attempt,
                col(ChatMessage.status) == "speaking",
            )
            .values(
                status="done",
                reply_media_key=key,
                timings=timings,
                conversation_id=conversation_id,
                lease_until=None,
                updated_at=now,
                completed_at=now,
            )
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            await s.rollback()
            await services.media.delete(key)
            raise Lost
        add_turns(
            s, conversation_id, msg.id, text, reply, asked_at=msg.created_at, answered_at=now, timings=timings
        )
        await s.commit()
    await _push(services, msg.id)


async def _fail(services: Services, mid: uuid.UUID, attempt: int, words: str) -> None:
    now = utcnow()
    async with services.sessions() as s:
        done = await s.execute(
            sa.update(ChatMessage)
            .where(
                col(ChatMessage.id) == mid,
                col(ChatMessage.attempts) == attempt,
                col(ChatMessage.status).in_(ACTIVE),
            )
            .values(status="failed", error=words[:2000], lease_until=None, updated_at=now, completed_at=now)
        )
        await s.commit()
    if done.rowcount == 1:  # type: ignore[attr-defined]
        await _push(services, mid)


async def _push(services: Services, mid: uuid.UUID) -> None:
    async with services.sessions() as s:
        msg = await s.get(ChatMessage, mid)
    if msg is not None:
        await push_to_user(services, msg.user_id, updated_event(msg))


# --- the sweep -----------------------------------------------------------------------------------


async def sweep(services: Services) -> None:
    """Send again what no job is working on: queued messages whose job was lost, expired leases."""
    from server.jobs import get_jobs

    now = utcnow()
    # A queued message normally waits less than this; past it its job was lost (Redis down at send).
    resend_before = now - timedelta(seconds=max(30.0, 6 * services.settings.jobs_sweep_interval_s))
    async with services.sessions() as s:
        lost = (
            await s.scalars(
                sa.select(col(ChatMessage.id)).where(
                    col(ChatMessage.status) == "queued", col(ChatMessage.updated_at) < resend_before
                )
            )
        ).all()
        expired = (
            await s.scalars(
                sa.select(col(ChatMessage.id)).where(
                    col(ChatMessage.status).in_(ACTIVE[1:]), col(ChatMessage.lease_until) < now
                )
            )
        ).all()
        if lost:  # once per interval, not at every sweep while a busy queue gets to it
            await s.execute(
                sa.update(ChatMessage).where(col(ChatMessage.id).in_(lost)).values(updated_at=now)
            )
            await s.commit()
    for mid in [*lost, *expired]:
        try:
            await get_jobs(services).send("chat.process", str(mid))
        except JobsUnavailable as e:
            log.warning("message %s: %s", mid, e)
            return


def _ms(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)


def _ms_since(at: datetime) -> float:
    return round((utcnow() - at).total_seconds() * 1000, 1)
