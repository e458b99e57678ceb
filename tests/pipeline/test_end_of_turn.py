"""End of turn in the core: words, sound and the speaker's pauses decide, on the fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pipeline.events import ItemDeleted, ReplyAudio, ResponseStarted, SpeechStopped
from tests.pipeline.callkit import Call, FakeTurnModel, silence, speech


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


def ended_at(call: Call) -> list[float]:
    """The endpointing wait of each ended turn (ms of silence required)."""
    return [float(i.end_of_turn["end_silence_ms"]) for i in call.conv.items if i.end_of_turn]


async def test_finished_words_and_sound_end_the_turn_quickly(call: Call) -> None:
    """Words that read finished and a model that hears a finish: the turn ends after ~350 ms."""
    call.engines.turn = FakeTurnModel(0.93)
    call.conv.turn_end.model = call.engines.turn
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == 1
    item = call.conv.items[0]
    assert item.end_of_turn["end_reason"] == "words and sound finished"
    assert item.end_of_turn["end_audio_p"] == 0.93 and item.end_of_turn["end_words"] == "complete"
    assert call.engines.turn.heard_s and call.engines.turn.heard_s[0] <= 8.0


async def test_unfinished_words_wait_for_the_maximum(call: Call) -> None:
    """ "My late husband and I used to." with a 1.5 s pause stays one turn, whatever the model says."""
    call.engines.turn = FakeTurnModel(0.99)
    call.conv.turn_end.model = call.engines.turn
    whole = "My late husband and I used to walk along the river."
    halves = iter(["My late husband and I used to.", whole])
    call.engines.stt.text_fn = lambda audio: next(halves, whole)
    await call.feed(speech(1200))
    await call.feed(silence(1500))
    assert not call.of(SpeechStopped) and not call.of(ReplyAudio)
    await call.feed(speech(1200))
    await call.feed(silence(2600))
    assert len(call.of(SpeechStopped)) == 1 and len(call.of(ResponseStarted)) == 1


async def test_a_doubtful_finish_waits_longer_than_a_mid_sentence_pause(call: Call) -> None:
    """Finished-looking words but an unfinished-sounding voice: a 1.2 s pause does not end the turn."""
    call.engines.turn = FakeTurnModel(0.05)
    call.conv.turn_end.model = call.engines.turn
    await call.feed(speech(900))
    await call.feed(silence(1200))
    assert not call.of(SpeechStopped)
    await call.feed(silence(600))
    assert len(call.of(SpeechStopped)) == 1
    assert call.conv.items[0].end_of_turn["end_reason"] == "words finished, sound unfinished"
    assert len(call.engines.turn.heard_s) == 2  # asked again once the pause grew


async def test_without_an_audio_model_the_learned_silence_ends_finished_words(call: Call) -> None:
    """No model configured: finished words end the turn after the speaker's learned silence (700 ms)."""
    await call.feed(speech(900))
    await call.feed(silence(600))
    assert not call.of(SpeechStopped)
    await call.feed(silence(200))
    assert len(call.of(SpeechStopped)) == 1
    assert ended_at(call) == [700.0]


async def test_speaking_on_while_the_first_words_play_rejoins_the_turn(call: Call) -> None:
    """The reply began playing, the caller went on within a second of it: the turns become one."""
    call.engines.turn = FakeTurnModel(0.93)
    call.conv.turn_end.model = call.engines.turn
    call.conv.config.lead_ms = 100
    await call.feed(speech(900))
    await call.feed(silence(400))
    await call.until(ReplyAudio)
    await call.feed(silence(650))  # more than the "barely heard" 500 ms, yet the first words
    turn_before = call.conv.items[0]
    await call.feed(speech(900))
    await call.feed(silence(500))
    await call.until(ItemDeleted)
    assert call.of(ItemDeleted)[0].item_id == turn_before.id
