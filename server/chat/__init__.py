"""Voice messages: the original app's chat flow, over HTTP.

The router (`server/routers/chat.py`) checks and decodes an upload (`audio.py`), stores a `queued`
ChatMessage and sends a "chat.process" job; the job (`responder.py`) transcribes it, answers with
the same companion as a call (persona, the caller's facts, and the history of their calls and
messages: `history.py`) and speaks the reply. Every status change is pushed to the user's open
calls and pages as `silvertalk.message.updated`.

Exceptions::

    ChatError
    └── BadAudio    an upload that is not audio we can decode, is empty, or is too long
"""

from __future__ import annotations

from typing import Any

from storage.models import ChatMessage

#: What a message goes through, in order; `failed` can follow any of the first four.
STATUSES = ("queued", "transcribing", "thinking", "speaking", "done", "failed")
ACTIVE = ("queued", "transcribing", "thinking", "speaking")


class ChatError(Exception):
    """Root of voice-message failures."""


class BadAudio(ChatError):
    """An upload we refuse; `str(e)` says why in plain words (returned to the client)."""


def message_public(msg: ChatMessage) -> dict[str, Any]:
    """The message as the API and the push events show it."""
    has_audio = msg.status == "done" and msg.reply_media_key is not None
    return {
        "id": str(msg.id),
        "status": msg.status,
        "language": msg.language,
        "input": msg.input_kind,
        "input_duration_s": msg.input_duration_s,
        "transcript": msg.text,
        "reply_text": msg.reply_text,
        "reply_audio_url": f"/v1/chat/messages/{msg.id}/audio" if has_audio else None,
        "error": msg.error,
        "timings": msg.timings or {},
        "created_at": msg.created_at.isoformat(),
        "updated_at": msg.updated_at.isoformat(),
        "completed_at": msg.completed_at.isoformat() if msg.completed_at else None,
    }


def updated_event(msg: ChatMessage) -> dict[str, Any]:
    return {"type": "silvertalk.message.updated", "message": message_public(msg)}
