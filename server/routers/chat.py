"""Voice messages: `POST /v1/chat/messages` (a recording or text), list, read, hear, retry.

A message is checked completely before anything is stored or queued: an upload that is too big
(413), not audio (415), empty or too long (422), or a bad language (422) leaves no trace. The
recording is kept decoded (16 kHz WAV) for the job; the answer comes from a job worker.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import col
from starlette.datastructures import UploadFile

from server.chat import BadAudio, audio, message_public, updated_event
from server.deps import CurrentUser, ServicesDep, SessionDep, parse_uuid
from server.jobs import JobsUnavailable, get_jobs
from server.jobs.push import push_to_user
from server.schemas.chat import ChatMessagePublic, ChatTextCreate
from server.schemas.common import DEFAULT_LIMIT, MAX_LIMIT, Page, fetch_page
from storage import MediaNotFound
from storage.models import ChatMessage, utcnow

router = APIRouter(prefix="/v1/chat", tags=["chat"])
log = logging.getLogger("silvertalk.chat")

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


def _language(value: Any, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not _LANGUAGE.match(value):
        raise HTTPException(422, "language must be a language code such as 'ko' or 'en-US'")
    return value


@router.post("/messages", status_code=status.HTTP_202_ACCEPTED, response_model=ChatMessagePublic)
async def send_message(
    request: Request, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> Any:
    """A voice message (multipart: `audio`, optional `language`) or a typed one (JSON `{"text"}`)."""
    settings = services.settings
    ctype = request.headers.get("content-type", "").lower()
    msg = ChatMessage(id=uuid.uuid4(), user_id=user.id, input_kind="audio", language=user.language)
    pcm = None
    if ctype.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("audio")
            if not isinstance(upload, UploadFile):
                raise HTTPException(422, "Send the recording in the form field 'audio'")
            msg.language = _language(form.get("language"), user.language)
            data = await upload.read(settings.chat_max_audio_bytes + 1)
        if len(data) > settings.chat_max_audio_bytes:
            cap = settings.chat_max_audio_bytes
            size = f"{cap / 1024 / 1024:.0f} MB" if cap >= 1024 * 1024 else f"{cap // 1024} KB"
            raise HTTPException(413, f"The recording is too big: at most {size}")
        try:
            pcm = await asyncio.to_thread(audio.decode_upload, data, max_seconds=settings.chat_max_audio_s)
        except BadAudio as e:
            code = 415 if "not audio" in str(e) or "no audio" in str(e) else 422
            raise HTTPException(code, str(e)) from None
        msg.input_duration_s = round(len(pcm) / audio.SAMPLE_RATE, 2)
    elif ctype.startswith("application/json"):
        try:
            body = ChatTextCreate.model_validate_json(await request.body())
        except ValidationError as e:
            raise HTTPException(422, 'Send JSON {"text": "..."} with the message\'s words') from e
        text = body.text.strip()
        if not text:
            raise HTTPException(422, "The message is empty")
        if len(text) > settings.chat_max_text_chars:
            raise HTTPException(
                422, f"The message is too long: at most {settings.chat_max_text_chars} characters"
            )
        msg.language = _language(body.language, user.language)
        msg.input_kind, msg.text = "text", text
    else:
        raise HTTPException(415, "Send multipart/form-data with an 'audio' file, or JSON {\"text\"}")
    if pcm is not None:
        key = f"chat/{msg.id}/input.wav"
        await services.media.put(key, await asyncio.to_thread(audio.to_wav, pcm, audio.SAMPLE_RATE))
        msg.input_media_key = key
    # Receiving, checking and decoding the upload (the rest of the timings are the job's).
    msg.timings = {"upload_ms": round((utcnow() - msg.created_at).total_seconds() * 1000, 1)}
    session.add(msg)
    await session.commit()
    await _queue(services, msg)
    return message_public(msg)


async def _queue(services: Any, msg: ChatMessage) -> None:
    await push_to_user(services, msg.user_id, updated_event(msg))
    try:
        await get_jobs(services).send("chat.process", str(msg.id))
    except JobsUnavailable as e:  # stored as queued: the sweep sends it when the queue is back
        log.warning("message %s: %s", msg.id, e)


@router.get("/messages", response_model=Page[ChatMessagePublic])
async def list_messages(
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Any:
    """The user's messages, newest first; pass `next_cursor` back as `cursor` for more."""
    rows, next_cursor = await fetch_page(
        session,
        sa.select(ChatMessage).where(col(ChatMessage.user_id) == user.id),
        key=col(ChatMessage.created_at),
        id_col=col(ChatMessage.id),
        limit=limit,
        cursor=cursor,
        row_key=lambda row: (row[0].created_at, row[0].id),
    )
    return {"items": [message_public(row[0]) for row in rows], "next_cursor": next_cursor}


async def _own(session: SessionDep, user: CurrentUser, message_id: str) -> ChatMessage:
    msg = await session.get(ChatMessage, parse_uuid(message_id))
    if msg is None or msg.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Message not found")
    return msg


@router.get("/messages/{message_id}", response_model=ChatMessagePublic)
async def get_message(message_id: str, user: CurrentUser, session: SessionDep) -> Any:
    """One message with its transcript, reply text, timings and `reply_audio_url`."""
    return message_public(await _own(session, user, message_id))


@router.get(
    "/messages/{message_id}/audio",
    responses={200: {"content": {"audio/wav": {}, "audio/ogg": {}}}},
    response_class=Response,
)
async def message_audio(
    message_id: str, request: Request, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> Response:
    """The spoken reply: WAV, or Ogg/Opus when `Accept` asks for audio/ogg or opus (and not WAV)."""
    msg = await _own(session, user, message_id)
    if msg.status != "done" or msg.reply_media_key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"This message has no reply audio ({msg.status})")
    try:
        wav = await services.media.get(msg.reply_media_key)
    except MediaNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "The reply audio is gone") from None
    accept = request.headers.get("accept", "").lower()
    wants_opus = ("ogg" in accept or "opus" in accept) and "wav" not in accept
    headers = {"Cache-Control": "private, max-age=3600", "Vary": "Accept"}
    if wants_opus:
        data = await asyncio.to_thread(audio.wav_to_ogg_opus, wav)
        return Response(data, media_type="audio/ogg; codecs=opus", headers=headers)
    return Response(wav, media_type="audio/wav", headers=headers)


@router.post(
    "/messages/{message_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=ChatMessagePublic
)
async def retry_message(
    message_id: str, user: CurrentUser, session: SessionDep, services: ServicesDep
) -> Any:
    """Send a failed message again (409 unless it failed)."""
    msg = await _own(session, user, message_id)
    done = await session.execute(
        sa.update(ChatMessage)
        .where(col(ChatMessage.id) == msg.id, col(ChatMessage.status) == "failed")
        .values(status="queued", error=None, completed_at=None, updated_at=utcnow())
    )
    await session.commit()
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"Only a failed message can be retried (it is {msg.status})"
        )
    await session.refresh(msg)
    await _queue(services, msg)
    return message_public(msg)
