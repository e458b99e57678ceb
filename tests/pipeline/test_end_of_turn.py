"""End of turn in the core: words, sound and the speaker's pauses decide, on the fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from pipeline.engines.base import PCM
from pipeline.events import ItemDeleted, ReplyAudio, ResponseDone, ResponseStarted, SpeechStopped
from pipeline.scheduler import EngineScheduler, Priority
from pipeline.turn_end import SpeakerHabits
from tests.pipeline.callkit import Call, FakeTurnModel, silence, speech, voiced_seconds, words


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    c = Call()
    yield c
    await c.close()


def hears(call: Call, p: float, *, lead_ms: float | None = None) -> FakeTurnModel:
    """Give the call an audio end-of-turn model that answers `p`; `lead_ms` paces the reply as a
    client plays it (so the caller can speak within its first words)."""
    call.engines.turn = model = FakeTurnModel(p)
    call.conv.turn_end.model = model
    if lead_ms is not None:
        call.conv.config.lead_ms = lead_ms
    return model


def ended_at(call: Call) -> list[float]:
    """The endpointing wait of each ended turn (ms of silence required)."""
    return [float(i.end_of_turn["end_silence_ms"]) for i in call.conv.items if i.end_of_turn]


async def test_finished_words_and_sound_end_the_turn_quickly(call: Call) -> None:
    """Words that read finished and a model that hears a finish: the turn ends after ~350 ms."""
    hears(call, 0.93)
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == 1
    item = call.conv.items[0]
    assert item.end_of_turn["end_reason"] == "words and sound finished"
    assert item.end_of_turn["end_audio_p"] == 0.93 and item.end_of_turn["end_words"] == "complete"
    assert call.engines.turn.heard_s and call.engines.turn.heard_s[0] <= 8.0


async def test_unfinished_words_wait_for_the_maximum(call: Call) -> None:
    """ "My late husband and I used to." with a 1.5 s pause stays one turn, whatever the model says."""
    hears(call, 0.99)
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
    hears(call, 0.05)
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
    hears(call, 0.93, lead_ms=100)
    await call.feed(speech(900))
    await call.feed(silence(400))
    await call.until(ReplyAudio)
    await call.feed(silence(650))  # more than the "barely heard" 500 ms, yet the first words
    turn_before = call.conv.items[0]
    await call.feed(speech(900))
    await call.feed(silence(500))
    await call.until(ItemDeleted)
    assert call.of(ItemDeleted)[0].item_id == turn_before.id


async def test_a_caller_who_went_on_after_a_finished_pause_gets_more_time(call: Call) -> None:
    """ "I saw an old photo ... of my wedding day": words and sound both read finished at the pause,
    so the first time the turn ends and is rejoined; from then on this caller's finished-looking
    turns wait 1.5x that pause, and the same pause no longer ends a turn."""
    hears(call, 0.93, lead_ms=100)
    await call.feed(speech(900))
    await call.feed(silence(1000))  # a pause of 1 s after a whole phrase: the turn ends at 350 ms
    assert len(call.of(SpeechStopped)) == 1
    assert call.conv.turn_end.patience_ms == 0
    await call.feed(speech(900))  # ... and they go on: rejoined
    await call.feed(silence(600))
    await call.until(ItemDeleted)
    assert 1500 <= call.conv.turn_end.patience_ms <= 1600  # 1.5 x the ~1 s pause
    await call.until(ResponseDone, 2)  # they hear our answer out (the first was cut), then speak
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(1200))  # the same kind of pause now stays inside the turn
    assert len(call.of(SpeechStopped)) == stopped
    await call.feed(speech(900))
    await call.feed(silence(1700))  # and, bridged, it is learned too: 1.5 x 1.2 s now
    assert len(call.of(SpeechStopped)) == stopped
    await call.feed(silence(200))
    assert len(call.of(SpeechStopped)) == stopped + 1
    last = next(i for i in reversed(call.conv.items) if i.role == "user")
    assert last.end_of_turn["end_silence_ms"] == last.end_of_turn["end_patience_ms"]
    assert "went on" in str(last.end_of_turn["end_reason"])


async def test_one_short_pause_gone_on_after_teaches_at_least_the_doubt_wait(call: Call) -> None:
    """The benchmark's caller: "We used to grow tomatoes and peppers | in the garden" went on after
    600 ms, and the next pause after a whole phrase was 900 ms. One short pause says little about
    the next: from the first one on, a finished-looking pause of theirs waits at least the doubt
    wait (1.6 s), not only 1.5x the pause seen (900 ms, which that pause outlasted)."""
    await _went_on_once(call, pause_ms=600)
    assert call.conv.turn_end.patience_ms == 1600
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(1200))  # longer than 1.5 x 600 ms: stays inside the turn
    assert len(call.of(SpeechStopped)) == stopped
    await call.feed(speech(900))
    await call.feed(silence(1800))
    assert len(call.of(SpeechStopped)) == stopped + 1


async def test_a_commas_breath_gone_on_after_teaches_only_its_own_patience(call: Call) -> None:
    """ "The weather is lovely today, | isn't it?" went on after a 420 ms breath: not a pause
    mid-thought, so the next finished turn waits 1.5x that (630 ms), not the doubt wait."""
    await _went_on_once(call, pause_ms=420)
    assert call.conv.turn_end.patience_ms == 630
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(800))
    assert len(call.of(SpeechStopped)) == stopped + 1


async def test_a_question_tag_after_a_pause_teaches_nothing(call: Call) -> None:
    """The benchmark's "The weather is lovely today, | isn't it?" with a 520 ms breath before the
    tag: the turn ended (words and sound finished) and was rejoined. The sentence was finished and
    the tag hands us the turn, so the breath teaches no patience: the next finished turn ends at
    350 ms (before: the pause, over 500 ms, taught 1.6 s for the next four turns)."""
    call.engines.stt.text_fn = spoken(
        "The weather is lovely today.", "The weather is lovely today. Isn't it?", "My son called me."
    )
    await _went_on_once(call, pause_ms=520)
    assert call.conv.turn_end.patience_ms == 0
    assert call.conv.items[-2].text == "The weather is lovely today. Isn't it?"
    call.engines.stt.text_fn = lambda audio: "My son called me this morning."
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(500))
    assert len(call.of(SpeechStopped)) == stopped + 1
    assert ended_at(call)[-1] == 350


async def test_words_going_on_after_a_pause_still_teach_it(call: Call) -> None:
    """ "I saw an old photo | of my wedding day" after the same 520 ms: what was added goes on with
    the thought, so the pause teaches the doubt wait as before."""
    call.engines.stt.text_fn = spoken("I saw an old photo.", "I saw an old photo. Of my wedding day.")
    await _went_on_once(call, pause_ms=520)
    assert call.conv.turn_end.patience_ms == 1600


def spoken(*parts: str) -> Callable[[PCM], str]:
    """A Whisper stand-in for an utterance said in parts of 0.9 s of speech each: what it writes
    once the first part, the first two, ... have been said."""

    def text(audio: PCM) -> str:
        said = voiced_seconds(audio)
        if said < 0.3:
            return ""
        return parts[max(1, min(round(said / 0.9), len(parts))) - 1]

    return text


#: "We used to | grow tomatoes and peppers | in the garden.", as far as it has been said.
garden = spoken("We used to.", "We used to grow tomatoes and peppers.", "... peppers in the garden.")


async def test_a_pause_mid_thought_makes_the_rest_of_its_turn_wait(call: Call) -> None:
    """The benchmark's "We used to | grow tomatoes and peppers | in the garden.": the 1.8 s pause
    after "used to" stays inside the turn by the words; then the caller paused 600 ms after a whole
    phrase that words and sound read finished, and the turn ended there (a wrong cut-off). Having
    paused mid-thought in this turn, they may again before it is over: its later finished-looking
    pauses wait the patience that pause teaches (1.5 x 1.8 s, at most 2.5 s)."""
    hears(call, 0.93)
    call.engines.stt.text_fn = garden
    await call.feed(speech(900))
    await call.feed(silence(1800))  # "We used to." reads unfinished
    await call.feed(speech(900))
    await call.feed(silence(600))  # "... tomatoes and peppers." reads finished, and sounds it
    assert not call.of(SpeechStopped)
    await call.feed(speech(900))
    await call.feed(silence(2400))
    assert not call.of(SpeechStopped)
    await call.feed(silence(200))
    assert len(call.of(SpeechStopped)) == 1 and ended_at(call) == [2500.0]
    # Both teach the call: the stop mid-phrase (as the shortest pause mid-thought: the doubt wait,
    # not 1.5 x 1.8 s), and the 600 ms pause after a whole phrase, which the table alone would have
    # ended the turn in.
    first, second = call.conv.turn_end.went_on_after
    assert first == 500 and 580 <= second <= 620


async def test_a_pause_mid_phrase_teaches_the_call(call: Call) -> None:
    """The benchmark's first caller: "My late husband and I used to | walk along the river" (a
    600 ms pause the unfinished words bridged), then "Yesterday I went to the | market", which
    Whisper heard at the 1.2 s pause as "Yesterday I went to them." (its ending at 0.62, sure
    enough) and Smart Turn as finished (0.96): the turn ended in the pause and the reply began.
    A caller who stopped mid-phrase once will again: from then on their finished-looking pauses
    wait the patience such a stop teaches (the doubt wait, 1.6 s)."""
    hears(call, 0.96)
    call.engines.stt.end_prob = 0.62
    call.engines.stt.text_fn = spoken("My late husband and I used to.", "... used to walk along the river.")
    await call.feed(speech(900))
    await call.feed(silence(600))  # the words read unfinished: it stays inside the turn
    await call.feed(speech(900))
    await call.feed(silence(2600))
    await call.until(ResponseDone)
    assert len(call.of(SpeechStopped)) == 1
    assert call.conv.turn_end.patience_ms == 1600
    call.engines.stt.text_fn = spoken("Yesterday I went to them.", "... went to the market with my daughter.")
    await call.feed(speech(900))
    await call.feed(silence(1200))  # words and sound read finished: only the patience bridges it
    assert len(call.of(SpeechStopped)) == 1 and len(call.of(ResponseStarted)) == 1
    await call.feed(speech(900))
    await call.feed(silence(1900))  # the bridged pause is learned too: 1.5 x 1.2 s
    assert len(call.of(SpeechStopped)) == 2 and ended_at(call)[-1] == 1800.0


async def test_stopping_mid_phrase_teaches_the_doubt_wait_once(call: Call) -> None:
    """Long stops mid-phrase, turn after turn (an older speaker searching for words): the patience
    they teach is the doubt wait, not 1.5 x 1.8 s, and it is learned once, so it is not remembered
    eight times over once they stop pausing."""
    hears(call, 0.93)
    for _ in range(3):
        done = len(call.of(ResponseDone))
        call.engines.stt.text_fn = spoken("We used to.", "We used to grow tomatoes.")
        await call.feed(speech(900))
        await call.feed(silence(1800))  # the words read unfinished
        await call.feed(speech(900))
        await call.feed(silence(2600))
        await call.until(ResponseDone, done + 1)
    assert list(call.conv.turn_end.went_on_after) == [500]
    call.engines.stt.text_fn = words
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(1700))
    assert len(call.of(SpeechStopped)) == stopped + 1 and ended_at(call)[-1] == 1600.0


async def test_a_pause_mid_thought_after_a_whole_clause_teaches_only_its_own_turn(call: Call) -> None:
    """ "The weather is lovely today, | isn't it?" with the comma said slowly (600 ms), bridged by
    the sound (unfinished): the rest of that turn waits the patience, but a comma's breath after a
    whole clause says nothing of how the caller ends their turns: the next turn ends at 350 ms."""
    model = hears(call, 0.2)
    call.engines.stt.text_fn = spoken("The weather is lovely today.", "... lovely today, isn't it?")
    await call.feed(speech(900))
    await call.feed(silence(600))  # the sound says unfinished: the doubt wait bridges it
    model.p = 0.93
    await call.feed(speech(900))
    await call.feed(silence(1500))
    assert not call.of(SpeechStopped)  # the rest of this turn waits the patience (1.6 s)
    await call.feed(silence(200))
    await call.until(ResponseDone)
    assert len(call.of(SpeechStopped)) == 1 and ended_at(call) == [1600.0]
    assert not call.conv.turn_end.went_on_after
    call.engines.stt.text_fn = words
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == 2 and ended_at(call)[-1] == 350.0


async def test_a_pause_at_a_clauses_boundary_teaches_only_its_own_turn(call: Call) -> None:
    """The telephone sentence "When you hear the bell, | come quickly." said with a 580 ms comma: the
    dependent clause reads unfinished, so the words bridge the pause, but the caller was not
    searching for a word (no stop mid-phrase): the next turn ends at 350 ms, not after 1.6 s."""
    hears(call, 0.93)
    call.engines.stt.text_fn = spoken("When you hear the bell.", "When you hear the bell, come quickly.")
    await call.feed(speech(900))
    await call.feed(silence(580))
    await call.feed(speech(900))
    await call.feed(silence(2600))
    await call.until(ResponseDone)
    assert len(call.of(SpeechStopped)) == 1 and not call.conv.turn_end.went_on_after
    call.engines.stt.text_fn = words
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == 2 and ended_at(call)[-1] == 350.0


async def test_a_caller_who_answers_after_hearing_us_is_not_taken_for_a_pauser(call: Call) -> None:
    """A new turn after they heard our answer is an answer: the next turn still ends quickly."""
    hears(call, 0.93, lead_ms=100)
    await call.feed(speech(900))
    await call.feed(silence(400))
    await call.until(ResponseDone)
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert not call.of(ItemDeleted)
    assert len(call.of(SpeechStopped)) == 2
    assert call.conv.turn_end.patience_ms == 0


async def test_the_sound_is_judged_only_when_it_can_matter(call: Call) -> None:
    """Unfinished words wait the longest whatever the sound: the model is not asked (no CPU taken
    from the decode); once the words read finished it judges the sound as the pause began."""
    hears(call, 0.99)
    whole = "My late husband and I used to walk along the river."
    halves = iter(["My late husband and I used to.", whole])
    call.engines.stt.text_fn = lambda audio: next(halves, whole)
    await call.feed(speech(1200))
    await call.feed(silence(1500))  # past the 0.8 s re-ask too
    assert call.engines.turn.heard_s == []
    await call.feed(speech(1200))
    await call.feed(silence(400))
    assert len(call.engines.turn.heard_s) == 1
    # What it heard ends where the pause began (the turn so far plus ~160 ms), not 400 ms later.
    turn_s = (1200 + 1500 + 1200) / 1000
    assert call.engines.turn.heard_s[0] <= turn_s + 0.3


async def _went_on_once(call: Call, pause_ms: int = 1000) -> None:
    """A pause after a whole phrase ends the turn (at 350 ms), they go on: rejoined, and they hear
    our answer out. A 1 s pause teaches a patience of ~1.5 s."""
    hears(call, 0.93, lead_ms=100)
    await call.feed(speech(900))
    await call.feed(silence(pause_ms))
    await call.feed(speech(900))
    await call.feed(silence(600))
    await call.until(ItemDeleted)
    await call.until(ResponseDone, 2)


async def _finished_turn(call: Call) -> None:
    """One whole sentence, answered and heard out."""
    done = len(call.of(ResponseDone))
    await call.feed(speech(900))
    await call.feed(silence(2600))
    await call.until(ResponseDone, done + 1)


async def test_patience_no_longer_needed_is_forgotten(call: Call) -> None:
    """After four finished turns that waited on the patience with no pause it bridged, the caller
    gets quick answers again."""
    await _went_on_once(call)
    assert call.conv.turn_end.patience_ms >= 1500
    for _ in range(4):
        await _finished_turn(call)
    assert call.conv.turn_end.patience_ms == 0
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == stopped + 1


async def test_turns_with_pauses_inside_keep_the_patience(call: Call) -> None:
    """A caller who goes on pausing mid-thought, even where the words bridged the pause ("... used
    to" reads unfinished), still pauses: four such turns do not make the patience forgotten, and a
    pause after a whole phrase in the next turn is not taken for its end."""
    await _went_on_once(call)
    patience = call.conv.turn_end.patience_ms
    for _ in range(4):
        done = len(call.of(ResponseDone))
        halves = iter(["We used to.", "We used to grow tomatoes."])
        call.engines.stt.text_fn = lambda audio, h=halves: next(h, "We used to grow tomatoes.")  # type: ignore[misc]
        await call.feed(speech(900))
        await call.feed(silence(1000))  # bridged by the unfinished words
        await call.feed(speech(900))
        await call.feed(silence(2600))
        await call.until(ResponseDone, done + 1)
    assert call.conv.turn_end.patience_ms == patience >= 1500
    call.engines.stt.text_fn = words
    stopped = len(call.of(SpeechStopped))
    await call.feed(speech(900))
    await call.feed(silence(1000))  # after a whole phrase: words and sound read finished
    assert len(call.of(SpeechStopped)) == stopped


async def test_a_pause_the_patience_bridged_keeps_it(call: Call) -> None:
    """A 1.2 s pause inside a later turn, which the table alone would have ended, is the same
    habit: the patience is kept however many finished turns follow it."""
    await _went_on_once(call)
    for _ in range(3):
        await _finished_turn(call)
    done = len(call.of(ResponseDone))
    await call.feed(speech(900))
    await call.feed(silence(1200))  # bridged by the patience
    await call.feed(speech(900))
    await call.feed(silence(2600))
    await call.until(ResponseDone, done + 1)
    assert len(call.conv.turn_end.went_on_after) == 2
    for _ in range(3):
        await _finished_turn(call)
    assert call.conv.turn_end.patience_ms >= 1500


async def test_what_a_call_learned_starts_the_next(call: Call) -> None:
    """The habits a call learned (pauses, patience) start the caller's next call: there the same
    finished-looking pause no longer ends the turn."""
    await _went_on_once(call)
    habits = call.conv.habits
    assert habits.went_on_ms and SpeakerHabits.from_json(habits.as_json()) == habits
    nxt = Call()
    try:
        hears(nxt, 0.93)
        nxt.conv.learn_habits(habits)
        assert nxt.conv.turn_end.patience_ms == call.conv.turn_end.patience_ms >= 1500
        await nxt.feed(speech(900))
        await nxt.feed(silence(1200))
        assert not nxt.of(SpeechStopped)
    finally:
        await nxt.close()


@pytest.mark.parametrize(
    "stored",
    [None, [], "x", {"pauses_ms": "x"}, {"pauses_ms": [True, -5, 10**9, "700"], "went_on_ms": [None]}],
)
def test_stored_habits_that_make_no_sense_count_as_unknown(stored: object) -> None:
    """An old row, a hand edit: nothing but whole milliseconds in range is taken."""
    assert SpeakerHabits.from_json(stored) == SpeakerHabits()
    assert SpeakerHabits.from_json({"pauses_ms": [900, "x", 0], "went_on_ms": [1000]}) == SpeakerHabits(
        (900,), (1000,)
    )


async def test_the_final_decode_starts_sooner_while_the_decoder_is_idle(call: Call) -> None:
    """With nothing else decoding, the speculative decode starts at 80 ms of silence, not 160; the
    end-of-turn model still hears the pause as it sounds at 160 ms."""
    hears(call, 0.93)
    await call.feed(speech(900))
    await call.feed(silence(100))
    assert len(call.engines.stt.calls) == 1 and call.engines.stt.calls[0] <= 0.9 + 0.1
    assert call.engines.turn.heard_s == []
    await call.feed(silence(420))
    assert len(call.of(SpeechStopped)) == 1
    assert 0.9 + 0.14 <= call.engines.turn.heard_s[0] <= 0.9 + 0.2


async def test_while_another_call_decodes_the_decode_waits_for_the_usual_pause(call: Call) -> None:
    """A decode of another call on the same engine: a speculation would queue behind it and be
    thrown away at most word gaps, so the pause must reach 160 ms first (and the engine is shared)."""
    other = asyncio.Event()

    async def another_call_decoding() -> None:
        async with EngineScheduler.of(call.engines.stt).turn(Priority.NOW):
            await other.wait()

    busy = asyncio.create_task(another_call_decoding())
    await call.settle()
    await call.feed(speech(900))
    await call.feed(silence(100))
    assert call.conv.stt.speculation is None
    await call.feed(silence(80))
    assert call.conv.stt.speculation is not None
    other.set()
    await busy
    await call.feed(silence(700))
    assert len(call.of(SpeechStopped)) == 1


async def paused_after(
    call: Call,
    text: str,
    doubted: bool,
    *,
    end_prob: float,
    alternatives: tuple[tuple[str, float], ...] = (),
) -> dict[str, float | str]:
    """Words Whisper wrote as `text` (its ending at `end_prob`, the other readings it weighed),
    1.2 s of them, a 1.2 s pause that ends the turn unless `doubted`, then 0.5 s more silence (and
    a sound model that hears a finish throughout); how the turn ended."""
    hears(call, 0.97)
    call.engines.stt.text_fn = lambda audio: text
    call.engines.stt.end_prob = end_prob
    call.engines.stt.end_alternatives = alternatives
    await call.feed(speech(1200))
    await call.feed(silence(1200))
    assert bool(call.of(SpeechStopped)) is not doubted
    await call.feed(silence(500))
    assert len(call.of(SpeechStopped)) == 1
    return call.conv.items[0].end_of_turn


@pytest.mark.parametrize(("language", "doubted"), [("en", True), ("ko", False)])
async def test_a_doubted_last_word_keeps_the_turn_open(language: str, doubted: bool) -> None:
    """ "Could you remind me to | water the plants": Whisper wrote "Could you remind me too?" (the
    words read finished) and the sound model heard a finish, but the decoder gave its ending 0.38.
    Where a threshold is set for the language, a 1.2 s pause stays inside the turn and the model
    is not even asked; a language without one ends the turn at 350 ms as before."""
    call = Call(language=language, end_word_p={"en": 0.55})
    try:
        ended = await paused_after(call, "Could you remind me too?", doubted, end_prob=0.38)
        assert ended["end_word_p"] == 0.38
        if doubted:
            assert ended["end_silence_ms"] == 1600 and "last word uncertain" in str(ended["end_reason"])
            assert call.engines.turn.heard_s == []
        else:
            assert ended["end_silence_ms"] == 350 and ended["end_reason"] == "words and sound finished"
    finally:
        await call.close()


@pytest.mark.parametrize(
    ("alternatives", "doubted"),
    [
        ((("Yesterday I went to the", 0.22),), True),
        ((("Yesterday I went to Seoul", 0.2), ("Yesterday I went to the", 0.13)), True),
        ((("Yesterday I went to the", 0.08),), False),  # weighed too little
        ((("Yesterday I went to them", 0.3),), False),  # another reading, but a finished one
    ],
)
async def test_an_unfinished_reading_whisper_weighed_keeps_the_turn_open(
    alternatives: tuple[tuple[str, float], ...], doubted: bool
) -> None:
    """ "Yesterday I went to the | market": Whisper wrote "Yesterday I went to them." and was fairly
    sure of it (0.64, above the 0.55 threshold), and the sound model heard a finish; but it had
    also weighed "the" for the last word. An unfinished reading given 0.12 or more keeps a 1.2 s
    pause inside the turn without asking the sound model; one weighed less, or one that reads
    finished too, leaves the turn to end at 350 ms as before."""
    call = Call(language="en", end_word_p={"en": 0.55}, end_alt_p={"en": 0.12})
    try:
        ended = await paused_after(
            call, "Yesterday I went to them.", doubted, end_prob=0.64, alternatives=alternatives
        )
        if doubted:
            assert ended["end_silence_ms"] == 1600 and "nearly heard" in str(ended["end_reason"])
            assert "Yesterday I went to the'" in str(ended["end_reason"])
            assert ended["end_heard_unfinished_p"] == max(p for t, p in alternatives if t.endswith("the"))
            assert call.engines.turn.heard_s == []
        else:
            assert ended["end_silence_ms"] == 350 and ended["end_reason"] == "words and sound finished"
            assert "end_heard_unfinished_p" not in ended
    finally:
        await call.close()
