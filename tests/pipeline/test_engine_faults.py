"""Engines failing mid-turn inside the core: at most a short apology, and the call goes on (issue 10).

The fakes subclass the real engine Protocols (tests.pipeline.callkit); the LLM's own failure
mid-reply is in test_conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline import FatalEngineError, RetryableEngineError
from pipeline.events import ResponseDone, TranscriptFailed, TranscriptFinal
from tests.pipeline.callkit import Call, silence, speech


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


async def turn(call: Call, n_done: int) -> ResponseDone:
    await call.feed(speech(900))
    await call.feed(silence(1500))
    await call.until(ResponseDone, n_done)
    done: ResponseDone = call.of(ResponseDone)[n_done - 1]
    return done


@pytest.mark.parametrize(
    "error",
    [RetryableEngineError("decoder out of memory"), FatalEngineError("bad input"), RuntimeError("bug")],
)
async def test_a_failed_transcription_gets_an_apology_and_the_call_goes_on(
    call: Call, error: Exception
) -> None:
    """The STT engine raises (any error): transcription failed, a short apology, the next turn answered."""
    call.engines.stt.error = error
    apology = await turn(call, 1)
    assert apology.status == "completed" and apology.text == "Sorry, say again?"
    assert str(error) in call.of(TranscriptFailed)[0].message
    assert call.engines.llm.histories == []  # nothing was made up from no words
    call.engines.stt.error = None
    answer = await turn(call, 2)
    assert answer.status == "completed" and answer.text == call.engines.llm.reply
    assert len(call.of(TranscriptFinal)) == 1


async def test_a_turn_of_noise_gets_no_apology(call: Call) -> None:
    """A turn that transcribes to nothing (not a failure) is not answered at all."""
    call.engines.stt.text_fn = lambda audio: ""
    await call.feed(speech(900))
    await call.feed(silence(1500))
    await call.until(TranscriptFinal)
    await call.settle()
    assert call.of(ResponseDone) == []


async def test_a_voice_that_breaks_mid_reply_fails_only_that_reply(call: Call) -> None:
    """The TTS engine raises mid-sentence: that reply ends failed, saying why; the next turn is answered."""
    call.engines.tts.error = RuntimeError("onnxruntime: bad allocation")
    failed = await turn(call, 1)
    assert failed.status == "failed" and failed.status_details is not None
    assert "bad allocation" in str(failed.status_details)
    call.engines.tts.error = None
    await call.feed(silence(2500))
    answer = await turn(call, 2)
    assert answer.status == "completed"
