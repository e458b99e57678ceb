"""Voice messages as the API shows them (see `server.chat.message_public`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ChatTextCreate(BaseModel):
    """A typed message (JSON body of `POST /v1/chat/messages`)."""

    text: str = Field(min_length=1)
    language: str | None = None


class ChatMessagePublic(BaseModel):
    id: str
    #: queued | transcribing | thinking | speaking | done | failed
    status: str
    language: str
    #: "audio" or "text": what was sent
    input: str
    input_duration_s: float | None = None
    #: What the user said: the transcript of their recording, or their typed text
    transcript: str | None = None
    reply_text: str | None = None
    #: The spoken reply (WAV, or Ogg/Opus with `Accept: audio/ogg`), once `done`
    reply_audio_url: str | None = None
    #: Plain words when `failed`
    error: str | None = None
    #: ms: upload (received and decoded), queued, transcribe, first_token, llm, tts, and total
    #: (from the upload's arrival to the reply audio being ready)
    timings: dict[str, float] = Field(default_factory=dict)
    created_at: str
    updated_at: str
    completed_at: str | None = None
