"""Streaming transcription on top of a batch `SpeechToText`: partials, LocalAgreement, speculation.

One `StreamingTranscriber` serves one call, one utterance at a time::

    st = StreamingTranscriber(stt, "ko")
    st.push(pcm16k)                       # while the caller speaks
    if st.should_partial(now):            # worth a decode now?
        p = await st.partial()            # p.stable never changes; p.unstable may
    st.speculate()                        # VAD: speech stopped, endpointing still waiting
    st.cancel_speculation()               # ... the caller went on speaking after all
    task = st.finish()                    # the turn ended: usually the speculation, now the caller's
    st.reset()                            # next utterance (the task above runs on)
    transcript = await task

Why this shape: a Whisper decode costs about 1 s on the development CPU whatever the clip length,
so decodes are rationed. Partials re-decode the whole utterance (utterances are short) at most once
per `partial_every_s` of new audio, never while another decode runs, and leave the model idle
between them so that the final decode rarely waits behind one. Stability is LocalAgreement-2
on words: a word becomes committed once two consecutive decodes agree on it and everything before
it, and committed words are never taken back. The final decode starts when silence begins
(`speculate`), so by the time endpointing decides the turn is over the transcript is mostly ready.

Audio pushed after `speculate()` without a `cancel_speculation()` is taken to be the trailing
silence the caller's VAD already judged not to be speech; it does not invalidate the speculation.

For engines on another machine (`pipeline.engines.remote`) a partial's decode runs with
`DECODE_KIND` set to "partial", so the engine can send it at low priority or decline it
(`PartialSkipped`: the last partial stands); a final decode cancels a partial request still in
flight rather than waiting behind it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline import RetryableEngineError
from pipeline.engines.base import DECODE_KIND, PCM, SpeechToText, Transcript
from pipeline.scheduler import EngineScheduler, Priority

#: A pause, for `should_partial`: the last 200 ms at least 25 dB below the utterance's loudest 20 ms.
PAUSE_PROBE_S = 0.2
PAUSE_DROP_DB = 25.0
#: One engine call decodes at most this much audio: longer utterances are decoded window by
#: window (Whisper's own window is 30 s; up to 28 s it encodes a window fitted to the clip), so
#: one long commit never holds the shared engine for long, and there are no partials past it.
DECODE_WINDOW_S = 28.0
CUT_SEARCH_S = 4.0


class PartialSkipped(RetryableEngineError):
    """The engine declined a partial decode (its server is busy): the last partial stands."""


@dataclass(frozen=True, slots=True)
class Partial:
    """A partial transcript: `stable` is committed and only ever grows; `unstable` is tentative."""

    stable: str
    unstable: str

    @property
    def text(self) -> str:
        return f"{self.stable} {self.unstable}".strip()


@dataclass(slots=True)
class TranscriberStats:
    """What the benchmark reads: decode times (seconds) and how speculation fared."""

    partial_decode_s: list[float] = field(default_factory=list)
    final_decode_s: list[float] = field(default_factory=list)
    #: Seconds `final()` waited for its transcript (near zero when speculation hit and was done).
    final_wait_s: list[float] = field(default_factory=list)
    speculative_hits: int = 0
    speculative_misses: int = 0
    speculations_cancelled: int = 0


def _norm(word: str) -> str:
    """A word as LocalAgreement compares it: case and punctuation are not disagreements."""
    return re.sub(r"[^\w']+", "", word.lower())


class StreamingTranscriber:
    """The decoding policy for one call's utterances. Not thread-safe; use from one event loop."""

    def __init__(
        self,
        stt: SpeechToText,
        language: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        prompt: str | None = None,
        partial_every_s: float = 1.0,
        min_utterance_s: float = 1.0,
        min_gap_s: float = 0.25,
        idle_ratio: float = 1.0,
    ) -> None:
        self.stt = stt
        self.language = language
        self.prompt = prompt
        self.partial_every_s = partial_every_s
        self.min_utterance_s = min_utterance_s
        self.min_gap_s = min_gap_s
        self.idle_ratio = idle_ratio
        self.stats = TranscriberStats()
        self._clock = clock
        self._rate = stt.sample_rate
        self._chunks: list[PCM] = []
        self._samples = 0
        self._lock = asyncio.Lock()  # one decode at a time: they compete for the same CPU cores
        self._background: set[asyncio.Task[Transcript]] = set()  # abandoned decodes still running
        self._running: asyncio.Task[Transcript] | None = None  # the task whose decode is on the model
        self._spec: asyncio.Task[Transcript] | None = None
        self._partial_req: asyncio.Task[tuple[Transcript, float]] | None = None
        self._levels: list[float] = []  # dB of each 20 ms block of the utterance
        self._peak_db = 0.0
        self._level_rest: np.ndarray = np.zeros(0, dtype=np.float32)  # samples short of a block
        self.reset()

    # --- feeding --------------------------------------------------------------------------------

    def push(self, pcm: PCM) -> None:
        """Append audio of the current utterance (mono int16 at `stt.sample_rate`)."""
        if len(pcm):
            pcm = np.asarray(pcm, dtype=np.int16)
            self._chunks.append(pcm)
            self._samples += len(pcm)
            self._track_level(pcm)

    def _track_level(self, pcm: PCM) -> None:
        """Keep the level (dB) of each 20 ms block and the utterance's loudest, to spot a pause."""
        block = self._rate // 50
        x = np.concatenate([self._level_rest, pcm.astype(np.float32)])
        n = len(x) // block
        if n:
            energy = np.mean(np.square(x[: n * block].reshape(n, block)), axis=1)
            levels = 10.0 * np.log10(np.maximum(energy, 1.0))
            self._levels.extend(levels.tolist())
            self._peak_db = max(self._peak_db, float(levels.max()))
        self._level_rest = x[n * block :]

    def _pausing(self) -> bool:
        """True when the last `PAUSE_PROBE_S` of audio is far quieter than the utterance's speech."""
        n = round(PAUSE_PROBE_S * 50)
        return len(self._levels) >= n and max(self._levels[-n:]) < self._peak_db - PAUSE_DROP_DB

    def tail(self, seconds: float) -> PCM:
        """The last `seconds` of the utterance's audio (the end-of-turn model hears this)."""
        return self._audio()[-int(seconds * self._rate) :]

    @property
    def duration_s(self) -> float:
        """Seconds of audio in the current utterance."""
        return self._samples / self._rate

    def reset(self) -> None:
        """Forget the utterance (and any speculation) and start the next one. Stats are kept."""
        self._chunks, self._samples = [], 0
        self._levels = []
        self._peak_db = 0.0
        self._level_rest = np.zeros(0, dtype=np.float32)
        self.carry_on()

    def carry_on(self) -> None:
        """The caller went on after a turn we ended too soon: keep its audio, forget its decodes.

        What is pushed next extends the same utterance, so the next decode hears the words before
        the pause (a lone "ask not" is misheard; "my fellow Americans, ask not" is not).
        """
        self.cancel_speculation(count=False)
        self._decoded_samples = 0  # audio covered by the last partial decode
        self._last_decode_s = 0.0
        self._last_decode_end = float("-inf")
        self._committed: list[str] = []
        self._previous: list[str] = []
        self._unstable: list[str] = []

    # --- partials -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while any decode (partial, speculative, final, or an abandoned one) is running."""
        return self._lock.locked() or self._speculating or any(not t.done() for t in self._background)

    @property
    def idle(self) -> bool:
        """True when neither this call nor any other call of the process is decoding: a decode
        started now costs nobody anything and waits behind nothing."""
        return not self.busy and EngineScheduler.idle(self.stt)

    @property
    def speculation(self) -> asyncio.Task[Transcript] | None:
        """The pending speculative decode of the current utterance, if any."""
        return self._spec

    @property
    def _speculating(self) -> bool:
        return self._spec is not None and not self._spec.done()

    def should_partial(self, now: float) -> bool:
        """True when a partial decode is worth the CPU now.

        That is: the utterance is at least `min_utterance_s` long, no decode of any kind is running,
        no speculation is pending, at least `partial_every_s` of new audio arrived since the last
        decode (or as much as the last decode took, if more: decodes never queue up), and `now`
        (on the `clock` timebase) is past the last decode's end by `min_gap_s` or `idle_ratio`
        times its duration, whichever is more. That idle time is what makes speculation pay: a
        partial decode still running when the caller stops speaking delays the final decode by
        what is left of it, so partials keep the model busy at most 1/(1+idle_ratio) of the time.
        For the same reason there is no partial while the audio's tail is much quieter than the
        speech before it: the caller is pausing, and the final decode is probably next.
        """
        if self._spec is not None or self.busy or self.duration_s < self.min_utterance_s:
            return False
        if self.duration_s > DECODE_WINDOW_S:
            return False  # a partial would be a windowed decode of everything: leave the CPU to finals
        if self._pausing():
            return False
        new_s = (self._samples - self._decoded_samples) / self._rate
        if new_s < max(self.partial_every_s, self._last_decode_s):
            return False
        return now - self._last_decode_end >= max(self.min_gap_s, self.idle_ratio * self._last_decode_s)

    async def partial(self) -> Partial:
        """Decode the utterance so far and return committed text plus the tentative tail.

        When a speculative or final decode is pending it does not decode (the CPU is taken) and
        returns the last partial again. Raises the engine's EngineError.
        """
        if self._spec is not None or self._samples == 0:
            return self._current()
        audio, covered = self._audio(), self._samples
        token = DECODE_KIND.set("partial")  # the request task copies the context as it is now
        request = asyncio.create_task(self._decode(audio, Priority.SOON), name="stt-partial")
        self._partial_req = request
        DECODE_KIND.reset(token)
        try:
            transcript, elapsed = await request
        except PartialSkipped:
            self._decoded_samples = covered  # ask again only when more audio has come
            return self._current()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if request.cancelled() and task is not None and not task.cancelling():
                return self._current()  # dropped for a final decode (`_drop_partial`)
            raise
        finally:
            self._partial_req = None
        self.stats.partial_decode_s.append(elapsed)
        self._decoded_samples = covered
        self._last_decode_s = elapsed
        self._last_decode_end = self._clock()
        self._agree(transcript.text.split())
        return self._current()

    def _agree(self, words: list[str]) -> None:
        """LocalAgreement-2: commit the prefix two consecutive decodes agree on, past what is committed."""
        cur = [_norm(w) for w in words]
        prev = [_norm(w) for w in self._previous]
        n = len(self._committed)
        if cur[:n] == [_norm(w) for w in self._committed]:
            agreed = n
            while agreed < min(len(cur), len(prev)) and cur[agreed] == prev[agreed] and cur[agreed]:
                agreed += 1
            self._committed.extend(words[n:agreed])
            self._unstable = words[agreed:]
        else:
            # This decode rewrote committed words; they stay committed (the caller has shown
            # them) and the tail after them is this decode's best guess.
            self._unstable = words[n:]
        self._previous = words

    def _current(self) -> Partial:
        return Partial(stable=" ".join(self._committed), unstable=" ".join(self._unstable))

    # --- speculation and the final transcript ---------------------------------------------------

    def speculate(self) -> asyncio.Task[Transcript] | None:
        """Silence began: start the final decode of everything pushed so far, in a task.

        Returns that task (None when there is no audio); `cancel_speculation` may still cancel it
        until `finish` hands it over.
        """
        if self._spec is None and self._samples:
            self._drop_partial()
            self._spec = asyncio.create_task(self._final_decode(self._audio()), name="stt-speculative")
        return self._spec

    def _drop_partial(self) -> None:
        """A final decode is next: a partial request still in flight is stale, so it is cancelled.

        A remote request is abandoned at once; a local decode already on the model thread still
        finishes there, and the final queues behind it as it would have anyway.
        """
        if self._partial_req is not None and not self._partial_req.done():
            self._partial_req.cancel()

    def cancel_speculation(self, *, count: bool = True) -> None:
        """The caller went on speaking: drop the speculative result.

        The decode itself cannot be interrupted (it runs on a model thread), so it is left to finish
        in the background, and `should_partial` stays False until it has.
        """
        spec, self._spec = self._spec, None
        if spec is None:
            return
        if count:
            self.stats.speculations_cancelled += 1
        if spec is not self._running:
            spec.cancel()  # still waiting for its turn: it never reaches the model
        if not spec.done():
            self._background.add(spec)
            spec.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Transcript]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned decode's failure matters to nobody

    def finish(self) -> asyncio.Task[Transcript]:
        """The utterance is over: a task for its final transcript, which now belongs to the caller.

        When a speculation is pending (it covers all speech pushed so far; see the module doc), that
        is the task: a hit. Otherwise a decode of the audio pushed so far starts now: a miss. Either
        way the transcriber lets go of it, so a later `reset`, `carry_on` or `cancel_speculation`
        (the next turn) never cancels it. The task raises the engine's EngineError.
        """
        start = self._clock()
        spec, self._spec = self._spec, None
        if spec is not None:
            self.stats.speculative_hits += 1
            task = spec
        elif self._samples == 0:
            return asyncio.create_task(self._nothing(), name="stt-final")
        else:
            self.stats.speculative_misses += 1
            self._drop_partial()
            task = asyncio.create_task(self._final_decode(self._audio()), name="stt-final")
        task.add_done_callback(lambda _: self.stats.final_wait_s.append(self._clock() - start))
        return task

    async def final(self) -> Transcript:
        """`finish()`, awaited."""
        return await self.finish()

    async def _nothing(self) -> Transcript:
        return Transcript(text="", language=self.language)

    async def aclose(self) -> None:
        """Cancel pending work (the call ended). Decodes already on the model thread still finish."""
        tasks = [t for t in (self._spec, *self._background) if t is not None]
        self._spec = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _final_decode(self, audio: PCM) -> Transcript:
        """Decode in windows of at most `DECODE_WINDOW_S`, each taking its own turn on the engine
        (other calls' decodes go in between), and join their texts."""
        pieces = windows(audio, self._rate)
        results: list[Transcript] = []
        elapsed = 0.0
        for piece in pieces:
            transcript, took = await self._decode(piece, Priority.NOW)
            results.append(transcript)
            elapsed += took
        self.stats.final_decode_s.append(elapsed)
        if len(results) == 1:
            return results[0]
        head = " ".join(t.text.strip() for t in results[:-1] if t.text.strip())
        last = results[-1]
        return Transcript(
            text=f"{head} {last.text.strip()}".strip(),
            language=results[0].language,
            end_prob=last.end_prob,
            end_alternatives=tuple((f"{head} {alt}".strip(), p) for alt, p in last.end_alternatives),
        )

    # --- plumbing -------------------------------------------------------------------------------

    def _audio(self) -> PCM:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.int16)

    async def _decode(self, audio: PCM, priority: Priority) -> tuple[Transcript, float]:
        async with self._lock:
            t0 = self._clock()
            async with EngineScheduler.of(self.stt).turn(priority):
                self._running = asyncio.current_task()  # type: ignore[assignment]
                try:
                    transcript = await self.stt.transcribe(audio, language=self.language, prompt=self.prompt)
                finally:
                    self._running = None
            return transcript, self._clock() - t0


def windows(audio: PCM, rate: int, window_s: float = DECODE_WINDOW_S) -> list[PCM]:
    """`audio` cut into pieces of at most `window_s`, each cut at the quietest 100 ms of the last
    `CUT_SEARCH_S` before the limit (between words, where possible)."""
    limit, search, block = int(window_s * rate), int(CUT_SEARCH_S * rate), rate // 10
    pieces: list[PCM] = []
    start = 0
    while len(audio) - start > limit:
        lo = start + limit - search
        region = audio[lo : start + limit].astype(np.float32)
        n = len(region) // block
        energy = np.mean(np.square(region[: n * block].reshape(n, block)), axis=1)
        cut = lo + int(np.argmin(energy)) * block + block // 2
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces
