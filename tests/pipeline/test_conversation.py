"""The conversation core without sockets: feed audio frames and requests, check the events that come out.

The engines are small fakes of the external models (`tests.pipeline.callkit`); the core (VAD,
endpointer, StreamingTranscriber, sentences, replies) is the real code, on a fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.engines.base import Message
from pipeline.events import (
    InputCommitted,
    ItemDeleted,
    ItemTruncated,
    ReplyAudio,
    ReplyTextDelta,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptFinal,
)
from tests.pipeline.callkit import Call, silence, speech, voiced_seconds, words


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


async def test_a_turn_flows_to_a_spoken_reply(call: Call) -> None:
    """Speech then silence: committed turn, final transcript, reply text and <=100 ms audio, completed."""
    await call.feed(silence(300))
    await call.feed(speech(1200))
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    names = [n for n in call.names() if n not in ("ReplyAudio", "ReplyTextDelta", "TranscriptDelta")]
    assert names == [
        "SpeechStarted",
        "SpeechStopped",
        "InputCommitted",
        "ItemCreated",
        "TranscriptFinal",
        "ResponseStarted",
        "ResponseDone",
    ]
    started = call.of(SpeechStarted)[0]
    assert started.audio_start_ms == 0  # 300 ms of padding before speech at 300 ms
    assert call.of(SpeechStopped)[0].audio_end_ms == 1500
    assert call.of(TranscriptFinal)[0].text == "Hello hello hello hello."
    audio = call.of(ReplyAudio)
    assert audio and all(len(a.pcm) <= 2400 for a in audio)
    text = "".join(d.delta for d in call.of(ReplyTextDelta))
    assert text.split() == call.engines.llm.reply.split()
    done = call.of(ResponseDone)[0]
    assert done.status == "completed" and done.text == call.engines.llm.reply
    assert done.timings["speculative"] == 1.0
    # The reply was prepared during the endpointing wait: ready before the turn ended.
    assert done.timings["llm_first_token_ms"] < done.timings["turn_end_ms"]
    assert done.timings["first_audio_sent_ms"] - done.timings["turn_end_ms"] <= 20  # one frame
    assert call.engines.llm.histories[0][-1] == Message("user", "Hello hello hello hello.")
    assert [i.role for i in call.conv.items] == ["user", "assistant"]


async def test_without_speculation_the_turn_is_decoded_after_it_ends() -> None:
    """speculative=False: no decode until the endpointing wait is over, then one final decode and a reply."""
    call = Call(speculative=False)
    try:
        await call.feed(speech(900))
        await call.feed(silence(600))
        assert call.engines.stt.calls == []
        await call.feed(silence(200))
        await call.until(ResponseDone)
        done = call.of(ResponseDone)[0]
        assert done.status == "completed" and done.timings["speculative"] == 0.0
        st = call.conv.stt.stats
        assert (st.speculative_hits, st.speculative_misses) == (0, 1)
    finally:
        await call.close()


async def test_speculative_reply_discarded_when_caller_goes_on(call: Call) -> None:
    """A pause that was not the end: the speculative transcript and reply vanish without a trace."""
    await call.feed(speech(900))
    await call.feed(silence(400))
    await call.feed(speech(900))
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    assert len(call.of(SpeechStarted)) == 1 and len(call.of(ResponseStarted)) == 1
    finals = call.of(TranscriptFinal)
    assert len(finals) == 1 and len(finals[0].text.split()) == 6
    assert call.engines.llm.histories[-1][-1].text == finals[0].text
    assert call.conv.stt.stats.speculations_cancelled == 1


async def test_slow_speaker_mid_sentence_pause_keeps_the_turn(call: Call) -> None:
    """After 650 ms pauses, the speaker's 900 ms mid-sentence pause does not end the turn; the end
    of a turn paused in so often waits at least the doubt wait (1.6 s)."""
    for _ in range(3):
        await call.feed(speech(700))
        await call.feed(silence(650))
    await call.feed(speech(700))
    await call.feed(silence(900))
    await call.feed(speech(700))
    assert call.of(SpeechStopped) == []
    await call.feed(silence(1800))
    await call.until(ResponseDone)
    assert len(call.of(SpeechStopped)) == 1 and len(call.of(InputCommitted)) == 1


async def test_an_unfinished_sentence_keeps_the_turn_open(call: Call) -> None:
    """A transcript ending at a comma holds the turn through a 1.2 s pause; the sentence stays whole."""
    call.engines.stt.text_fn = lambda a: "When you hear the bell," if voiced_seconds(a) < 1.2 else words(a)
    await call.feed(speech(900))
    await call.feed(silence(1200))
    assert call.of(SpeechStopped) == []
    await call.feed(speech(600))
    await call.feed(silence(2000))  # they have shown a 1.2 s pause: the turn now needs 1.8 s
    await call.until(ResponseDone)
    assert (
        len(call.of(SpeechStopped)) == 1
        and call.of(TranscriptFinal)[0].text == "Hello hello hello hello hello."
    )


async def test_speaking_on_before_the_answer_is_heard_rejoins_the_turn(call: Call) -> None:
    """A turn ended in a pause, then more words before our answer is heard: one utterance, one answer.

    The answer to the first half is cancelled, the first user item is deleted, and the new item's
    transcript (decoded over both halves' audio) and the LLM's history hold the whole utterance.
    """
    call.conv.config.lead_ms = 300  # the answer is paced as a client plays it
    await call.feed(speech(900))
    await call.feed(silence(800))  # "Hello hello hello." looks finished: the turn ends at 700 ms
    first = call.of(InputCommitted)[0].item_id
    await call.until(ReplyAudio)
    await call.feed(speech(900))
    await call.feed(silence(1000))
    await call.until(ResponseDone, 2)
    half, whole = call.of(ResponseDone)
    assert half.status == "cancelled" and whole.status == "completed"
    assert [e.item_id for e in call.of(ItemDeleted)] == [first]
    finals = call.of(TranscriptFinal)
    assert [len(f.text.split()) for f in finals] == [3, 6]
    committed = call.of(InputCommitted)[1]
    assert committed.item_id == finals[1].item_id and committed.previous_item_id != first
    user_turns = [m.text for m in call.engines.llm.histories[-1] if m.role == "user"]
    assert user_turns == [finals[1].text]
    assert first not in [i.id for i in call.conv.items]
    assert call.conv.stt.stats.speculative_misses == 0  # both halves were decoded speculatively


async def test_a_noise_soon_after_a_turn_does_not_restart_the_answer(call: Call) -> None:
    """A 400 ms knock right after the turn ends, decoded with it, adds no words: the answer goes on."""
    call.conv.config.lead_ms = 300
    await call.feed(speech(900))
    await call.feed(silence(800))
    await call.until(ReplyAudio)
    call.engines.stt.text_fn = lambda a: "Hello hello hello."  # what Whisper hears: nothing new
    await call.feed(speech(400))
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    assert [d.status for d in call.of(ResponseDone)] == ["completed"]
    assert call.of(ItemDeleted) == [] and len(call.of(InputCommitted)) == 1


async def test_partial_transcripts_while_speaking(call: Call) -> None:
    """A long utterance yields growing stable partial transcripts before the final one."""
    await call.feed(speech(4000))
    deltas = call.of(TranscriptDelta)
    assert deltas and "".join(d.delta for d in deltas).split()[0] == "Hello"


async def start_reply(call: Call) -> ResponseStarted:
    call.engines.llm.reply = "I remember that summer very well. We went to the sea every day. It was warm."
    call.conv.config.lead_ms = 100
    await call.feed(speech(900))
    await call.feed(silence(800))
    await call.until(ReplyAudio)
    await call.feed(silence(1000))  # about a second of the reply is heard
    return call.of(ResponseStarted)[0]


async def test_barge_in_stops_audio_at_once_and_keeps_heard_text(call: Call) -> None:
    """Caller speech during a reply: no audio after speech_started, cancelled, history keeps the heard."""
    started = await start_reply(call)
    await call.feed(speech(800))
    turn = call.conv.floor.turn
    assert turn is not None and turn.continues is None  # a second of it was heard
    i = max(i for i, e in enumerate(call.events) if isinstance(e, SpeechStarted))
    assert not any(isinstance(e, ReplyAudio) for e in call.events[i:])
    done = call.of(ResponseDone)[0]
    assert done.status == "cancelled" and done.status_details == {
        "type": "cancelled",
        "reason": "turn_detected",
    }
    assert 900 <= done.audio_ms <= 1300
    full = call.engines.llm.reply
    assert done.text and full.startswith(done.text) and len(done.text) < len(full) / 2
    assistant = next(i for i in call.conv.items if i.id == started.item_id)
    assert assistant.text == done.text
    # The client says it played only 500 ms: the history keeps only those words.
    call.conv.truncate(started.item_id, 0, 500)
    await call.settle()
    truncated = call.of(ItemTruncated)[0]
    assert (
        truncated.audio_end_ms == 500
        and full.startswith(truncated.text)
        and len(truncated.text) < len(done.text)
    )
    await call.feed(silence(1000))
    await call.until(ResponseDone, 2)
    assert Message("assistant", truncated.text) in call.engines.llm.histories[-1]


async def test_cough_during_reply_resumes_it(call: Call) -> None:
    """A 100 ms knock during the reply pauses the voice, then it resumes where it stopped and completes."""
    await start_reply(call)
    await call.feed(speech(100))
    i = max(i for i, e in enumerate(call.events) if isinstance(e, SpeechStarted))
    await call.feed(silence(400))
    assert any(isinstance(e, ReplyAudio) for e in call.events[i:])
    await call.until(ResponseDone)
    done = call.of(ResponseDone)[0]
    assert done.status == "completed" and done.text == call.engines.llm.reply
    assert len(call.of(InputCommitted)) == 1


@pytest.mark.parametrize(
    ("voiced_ms", "gap_ms"),
    [
        (200, 120),  # a gap that short announces a pause early, to speculate, but is no cough's end
        (80, 180),  # "And so, | my fellow Americans": longer than a pause's 160 ms, not a cough's quiet
    ],
)
async def test_a_gap_between_words_does_not_resume_a_held_reply(
    call: Call, voiced_ms: int, gap_ms: int
) -> None:
    """Speaking over the reply with a gap after the first word: the reply stays silent."""
    await start_reply(call)
    await call.feed(speech(voiced_ms))
    i = max(i for i, e in enumerate(call.events) if isinstance(e, SpeechStarted))
    await call.feed(silence(gap_ms))
    await call.feed(speech(900))
    assert not any(isinstance(e, ReplyAudio) for e in call.events[i:])


async def test_a_cough_over_the_reply_lets_it_play_on(call: Call) -> None:
    """A 100 ms knock and quiet after it: the held reply plays on once the quiet reaches 300 ms."""
    await start_reply(call)
    await call.feed(speech(100))
    i = max(i for i, e in enumerate(call.events) if isinstance(e, SpeechStarted))
    await call.feed(silence(260))
    assert not any(isinstance(e, ReplyAudio) for e in call.events[i:])
    await call.feed(silence(200))
    assert any(isinstance(e, ReplyAudio) for e in call.events[i:])


async def test_no_words_in_the_interruption_resumes_the_reply(call: Call) -> None:
    """A 400 ms noise that transcribes to nothing resumes the reply instead of cancelling it."""
    await start_reply(call)
    call.engines.stt.text_fn = lambda a: ""
    await call.feed(speech(400))
    await call.feed(silence(900))
    await call.until(ResponseDone)
    assert call.of(ResponseDone)[0].status == "completed"
    assert len(call.of(InputCommitted)) == 1


async def test_llm_failure_apologises_and_the_call_goes_on(call: Call) -> None:
    """An upstream LLM error mid-reply: the apology is spoken, status failed, and the next turn works."""
    call.engines.llm.fail_after = 6
    await call.feed(speech(900))
    await call.feed(silence(1000))
    await call.until(ResponseDone)
    done = call.of(ResponseDone)[0]
    assert done.status == "failed" and done.text.endswith("Sorry, say again?")
    assert "Sorry, say again?" in call.engines.tts.spoken
    call.engines.llm.fail_after = None
    await call.feed(silence(2500))  # they listen to the apology
    await call.feed(speech(900))
    await call.feed(silence(1000))
    await call.until(ResponseDone, 2)
    assert call.of(ResponseDone)[1].status == "completed"


async def test_turn_detection_off_text_items_and_manual_commit(call: Call) -> None:
    """Without VAD the client commits audio and asks for replies; Korean text items are answered."""
    call.conv.configure(turn_detection=False, language="ko")
    call.conv.add_text("user", "안녕하세요, 오늘 기분이 좋아요.")
    call.conv.create_response()
    await call.until(ResponseDone)
    assert call.engines.llm.histories[0] == [Message("user", "안녕하세요, 오늘 기분이 좋아요.")]
    await call.feed(speech(900))
    assert call.of(SpeechStarted) == []
    call.conv.commit()
    await call.until(TranscriptFinal)
    assert call.of(TranscriptFinal)[0].text == "Hello hello hello."
    assert len(call.of(ResponseStarted)) == 1
    call.conv.create_response()
    await call.until(ResponseDone, 2)
    assert call.engines.llm.histories[-1][-1] == Message("user", "Hello hello hello.")
