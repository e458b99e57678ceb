"""Every committed turn settles (transcribed, empty or failed), and no reply waits forever (issue 10.3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.events import InputCommitted, ItemDeleted, ResponseDone, TranscriptFailed, TranscriptFinal
from tests.pipeline.callkit import Call, silence, speech


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


async def test_a_burst_of_odd_input_does_not_stop_the_call(call: Call) -> None:
    """Noise, commits, VAD off and on while a decode is slow: every commit settles, response.create answers.

    A long turn's partial decode holds the model; its speculative final waits behind it when the
    turn ends. Then VAD goes off, a noise is committed by hand (the transcriber moves on to it), VAD
    comes back, and the client asks for a reply.
    """
    stt = call.engines.stt
    stt.gate = asyncio.Event()  # the model is slow
    await call.feed(speech(3000))  # long enough for a partial decode
    assert len(stt.calls) == 1, "a partial decode is running"
    await call.feed(silence(call.conv.config.max_silence_ms + 200))
    assert len(call.of(InputCommitted)) == 1
    call.conv.configure(turn_detection=False)
    await call.feed(speech(400))
    call.conv.commit()
    call.conv.commit()  # nothing left: an error, nothing else
    call.conv.configure(turn_detection=True)
    await call.feed(silence(200))
    stt.gate.set()
    await call.settle()
    call.conv.create_response()
    await call.until(ResponseDone, limit=3000)
    committed = [e.item_id for e in call.of(InputCommitted)]
    settled = [e.item_id for e in call.events if isinstance(e, TranscriptFinal | TranscriptFailed)]
    assert len(committed) == 2 and sorted(settled) == sorted(committed)
    assert call.of(ResponseDone)[-1].status == "completed"


async def test_a_transcript_that_never_comes_fails_its_turn_in_bounded_time() -> None:
    """A decode that hangs: after transcript_timeout_s the turn fails (transcription failed) and a reply
    to the conversation still comes."""
    call = Call(transcript_timeout_s=0.3, create_response=False)
    try:
        call.engines.stt.gate = asyncio.Event()  # never opened: the model hangs
        await call.feed(speech(900))
        await call.feed(silence(call.conv.config.max_silence_ms + 200))
        await call.until(TranscriptFailed, limit=3000)
        failed = call.of(TranscriptFailed)[0]
        assert failed.item_id == call.of(InputCommitted)[0].item_id and "timed out" in failed.message
        call.conv.add_text("user", "Are you there?")
        call.conv.create_response()
        await call.until(ResponseDone)
        assert call.of(ResponseDone)[0].status == "completed"
        assert call.engines.llm.histories[-1][-1].text == "Are you there?"
    finally:
        await call.close()


async def test_a_rejoined_turn_late_transcript_is_not_announced(call: Call) -> None:
    """The first half's decode finishes after the second half rejoined it: the deleted item gets no
    transcript event (it would be stored and never deleted)."""
    call.conv.config.lead_ms = 300
    stt = call.engines.stt
    stt.gate = asyncio.Event()
    await call.feed(speech(900))
    await call.feed(silence(call.conv.config.max_silence_ms + 200))  # unknown words hold the turn
    first = call.of(InputCommitted)[0].item_id
    await call.feed(speech(900))  # they go on before hearing anything: a rejoin
    await call.feed(silence(call.conv.config.max_silence_ms + 200))
    assert [e.item_id for e in call.of(ItemDeleted)] == [first]
    stt.gate.set()  # only now does the first half's decode come back
    await call.until(ResponseDone)
    announced = [e.item_id for e in call.events if isinstance(e, TranscriptFinal | TranscriptFailed)]
    assert first not in announced and len(announced) == 1
