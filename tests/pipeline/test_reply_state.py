"""A reply's named states, the audio the core drops after a barge-in, usage, and idleness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pipeline.engines.base import Usage
from pipeline.events import OutputEvent, ReplyAudio, ResponseDone, ResponseStarted
from pipeline.reply import State
from tests.pipeline.callkit import Call, silence, speech


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


async def drain(call: Call) -> list[OutputEvent]:
    """What `next_event` hands the gateway from everything queued now."""
    out: list[OutputEvent] = []
    while not call.conv.out.empty():
        try:
            out.append(await asyncio.wait_for(call.conv.next_event(), 0.05))
        except TimeoutError:
            break
    return out


async def test_a_reply_goes_speculative_dropped_live_done(call: Call) -> None:
    """A pause makes a SPECULATIVE reply, speaking on DROPs it, the turn's end makes one LIVE, then DONE."""
    await call.feed(speech(900))
    await call.feed(silence(300))
    first = call.conv.floor.spec
    assert first is not None and first.state is State.SPECULATIVE
    await call.feed(speech(600))
    assert first.state is State.DROPPED and call.conv.floor.spec is None
    await call.feed(silence(300))
    second = call.conv.floor.spec
    assert second is not None and second.state is State.SPECULATIVE
    await call.feed(silence(700))
    assert second.state in (State.LIVE, State.DONE)  # released when the turn ended
    await call.until(ResponseDone)
    assert second.state is State.DONE and second.status == "completed"
    assert [d.response_id for d in call.of(ResponseDone)] == [second.response_id]


async def test_audio_queued_before_a_hold_never_reaches_the_gateway(call: Call) -> None:
    """Reply audio still queued when the reply is held is dropped by the core; after resume it flows."""
    call.conv.add_text("user", "Tell me about the sea.")
    reply = call.conv.create_response()
    assert reply is not None
    for _ in range(200):  # let it think and speak; nobody drains the queue
        await asyncio.sleep(0)
        if sum(isinstance(e, ReplyAudio) for e in list(call.conv.out._queue)) >= 3:
            break
    assert sum(isinstance(e, ReplyAudio) for e in list(call.conv.out._queue)) >= 3
    reply.hold()
    sent = await drain(call)
    assert any(isinstance(e, ResponseStarted) for e in sent)
    assert not any(isinstance(e, ReplyAudio) for e in sent)
    reply.resume()
    for _ in range(20):
        await asyncio.sleep(0)
    assert any(isinstance(e, ReplyAudio) for e in await drain(call))


async def test_usage_comes_from_the_llm(call: Call) -> None:
    """The LLM's reported token counts reach response.done; a fixed text (no LLM) reports zero."""
    call.engines.llm.usage = Usage(input_tokens=42, output_tokens=17)
    call.conv.add_text("user", "Hello there.")
    call.conv.create_response()
    await call.until(ResponseDone)
    assert call.of(ResponseDone)[0].usage == Usage(42, 17)
    call.conv.create_response(fixed_text="Are you still there?")
    await call.until(ResponseDone, 2)
    assert call.of(ResponseDone)[1].usage == Usage(0, 0)


async def test_idle_for_counts_from_the_last_activity(call: Call) -> None:
    """Idle time is 0 while the caller speaks or a reply plays, then counts from when it ended."""
    clock = call.clock
    await call.feed(speech(600))
    assert call.conv.idle_for(clock()) == 0.0
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    assert not call.conv.busy
    before = call.conv.idle_for(clock())
    clock.t += 5.0
    assert call.conv.idle_for(clock()) == pytest.approx(before + 5.0)
    assert call.conv.caller_idle_for(clock()) > 5.0
