"""StreamingTranscriber: LocalAgreement partials, speculative finals, CPU rationing."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np

from pipeline.engines.base import PCM, Transcript
from pipeline.engines.whisper import WhisperSTT
from pipeline.stt_stream import Partial, StreamingTranscriber
from tests.pipeline.conftest import JFK_TEXT, word_error_rate


class ScriptedSTT:
    """A SpeechToText whose decodes return scripted texts, each after `delay_s`."""

    sample_rate = 16000

    def __init__(self, texts: list[str], delay_s: float = 0.0) -> None:
        self.texts, self.delay_s, self.calls = list(texts), delay_s, 0
        self.lengths: list[int] = []

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        self.calls += 1
        self.lengths.append(len(audio))
        await asyncio.sleep(self.delay_s)
        return Transcript(text=self.texts.pop(0), language=language)


def second(n: float = 1.0) -> PCM:
    return np.full(int(16000 * n), 1000, dtype=np.int16)


async def test_local_agreement_commits_what_two_decodes_agree_on() -> None:
    """Words agreed by two consecutive decodes are committed and stay, even if a later decode disagrees."""
    stt = ScriptedSTT(["the cat", "the cat sat", "the cat sat on", "a cat sat on the mat"])
    st = StreamingTranscriber(stt, "en", partial_every_s=1.0, min_gap_s=0.0, idle_ratio=0.0)
    partials: list[Partial] = []
    for _ in range(4):
        st.push(second())
        assert st.should_partial(time.monotonic())
        partials.append(await st.partial())
    assert partials[0] == Partial("", "the cat")
    assert partials[1] == Partial("the cat", "sat")
    assert partials[2] == Partial("the cat sat", "on")
    # The fourth decode rewrote "the": committed text is kept, the rest is tentative.
    assert partials[3] == Partial("the cat sat", "on the mat")


async def test_agreement_ignores_case_and_punctuation() -> None:
    """ "Americans" and "Americans," agree; the committed form is the later decode's."""
    stt = ScriptedSTT(["And so my fellow Americans", "And so, my fellow Americans, ask"])
    st = StreamingTranscriber(stt, "en", min_gap_s=0.0)
    st.push(second())
    await st.partial()
    st.push(second())
    assert await st.partial() == Partial("And so, my fellow Americans,", "ask")


async def test_should_partial_rations_decodes() -> None:
    """No partial under the minimum length, without enough new audio, or while a speculation runs."""
    stt = ScriptedSTT(["one", "one two", "final"], delay_s=0.05)
    st = StreamingTranscriber(stt, "en", partial_every_s=1.0, min_utterance_s=1.0, min_gap_s=0.0)
    st.push(second(0.5))
    assert not st.should_partial(time.monotonic())
    st.push(second(0.5))
    assert st.should_partial(time.monotonic())
    await st.partial()
    st.push(second(0.5))
    assert not st.should_partial(time.monotonic())  # only 0.5 s new
    st.push(second(0.5))
    st.speculate()
    assert not st.should_partial(time.monotonic())
    assert await st.partial() == Partial("", "one")  # no decode while the speculation runs
    assert (await st.final()).text == "one two"
    assert stt.calls == 2


async def test_speculation_hit_needs_no_new_decode() -> None:
    """final() after speculate() returns the speculative result without decoding again."""
    stt = ScriptedSTT(["hello there"], delay_s=0.05)
    st = StreamingTranscriber(stt, "en")
    st.push(second(2))
    st.speculate()
    st.push(np.zeros(3200, np.int16))  # trailing silence during the endpointing wait
    assert (await st.final()).text == "hello there"
    assert stt.calls == 1 and st.stats.speculative_hits == 1 and st.stats.speculative_misses == 0


async def test_cancelled_speculation_is_a_miss() -> None:
    """When the caller goes on speaking the speculation is dropped and final() decodes all the audio."""
    stt = ScriptedSTT(["hello", "hello there my friend"], delay_s=0.05)
    st = StreamingTranscriber(stt, "en")
    st.push(second(1))
    st.speculate()
    await asyncio.sleep(0.01)  # the speculative decode is on the model
    st.push(second(1))
    st.cancel_speculation()
    assert st.busy and not st.should_partial(time.monotonic())  # the abandoned decode holds the CPU
    assert (await st.final()).text == "hello there my friend"
    assert stt.lengths == [16000, 32000]
    assert st.stats.speculative_misses == 1 and st.stats.speculations_cancelled == 1


async def test_speculation_cancelled_before_it_starts_never_decodes() -> None:
    """A speculation cancelled while still queued never reaches the model."""
    stt = ScriptedSTT(["hello there"])
    st = StreamingTranscriber(stt, "en")
    st.push(second(1))
    st.speculate()
    st.push(second(1))
    st.cancel_speculation()
    assert (await st.final()).text == "hello there"
    assert stt.lengths == [32000]


async def test_reset_starts_a_fresh_utterance() -> None:
    """After reset() the buffer and the committed words are empty; stats are kept."""
    stt = ScriptedSTT(["a b", "a b", "x"])
    st = StreamingTranscriber(stt, "en", min_gap_s=0.0)
    for _ in range(2):
        st.push(second())
        await st.partial()
    await st.final()
    st.reset()
    assert st.duration_s == 0 and await st.partial() == Partial("", "")
    assert len(st.stats.partial_decode_s) == 2 and len(st.stats.final_decode_s) == 1


async def test_jfk_streamed_with_real_whisper(whisper: WhisperSTT, jfk: PCM) -> None:
    """JFK streamed in 0.5 s chunks: committed words never change, speculation hits, the final is right."""
    st = StreamingTranscriber(whisper, "en", partial_every_s=3.0, min_gap_s=0.0, idle_ratio=0.0)
    partials: list[Partial] = []
    step = 8000
    for i in range(0, len(jfk), step):
        st.push(jfk[i : i + step])
        if st.should_partial(time.monotonic()):
            partials.append(await st.partial())
    # How many partials fit depends on how long each decode takes on this machine (a partial never
    # starts before the previous decode's duration of new audio): two are enough to check agreement.
    assert len(partials) >= 2
    for before, after in itertools.pairwise(partials):
        assert after.stable.startswith(before.stable)
    assert partials[-1].stable, partials
    st.speculate()
    await asyncio.sleep(0)  # the speculative decode is under way before the endpoint fires
    final = await st.final()
    assert word_error_rate(JFK_TEXT, final.text) <= 0.1, final.text
    assert word_error_rate(JFK_TEXT[: len(partials[-1].stable)], partials[-1].stable) <= 0.2
    assert st.stats.speculative_hits == 1 and len(st.stats.final_decode_s) == 1
    decodes = [round(s, 2) for s in st.stats.partial_decode_s]
    print(f"partial decodes {decodes} s, final {st.stats.final_decode_s[0]:.2f} s")


async def test_no_partial_while_the_caller_pauses() -> None:
    """When the audio's tail is far quieter than the speech, no partial starts: the final is likely next."""
    stt = ScriptedSTT(["hello"])
    st = StreamingTranscriber(stt, "en", min_gap_s=0.0)
    st.push(second(1.2))
    st.push(np.full(4000, 20, np.int16))  # 250 ms near-silence
    assert not st.should_partial(time.monotonic())
    st.push(second(1.0))  # speaking again
    assert st.should_partial(time.monotonic())
