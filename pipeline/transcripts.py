"""The caller's words: partial transcripts of the turn in progress, and each turn's final one.

One decode per turn, usually the speculative one `Floor` started when the caller paused. Every
user audio item is *settled* exactly once: its text (possibly empty) or its failure is stored on
the item, `Item.ready` is set, and once the item is committed the transcript event goes out
(`TranscriptFinal`, or `TranscriptFailed`, which the protocol sends as
`conversation.item.input_audio_transcription.failed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline import EngineError
from pipeline.core import CallCore
from pipeline.events import TranscriptDelta, TranscriptFailed, TranscriptFinal
from pipeline.turns import Item

log = logging.getLogger(__name__)


class Transcripts:
    """Partials for the turn in progress, and settling every user audio item's transcript."""

    def __init__(self, core: CallCore, *, on_words: Callable[[Item], None]) -> None:
        self.core = core
        #: Told each committed turn's words once they are known (the endpointer learns from them).
        self.on_words = on_words
        self._turn: Item | None = None  # the turn whose partials go out
        self._partial_sent = ""
        self._partial_task: asyncio.Task[None] | None = None

    # --- partials ------------------------------------------------------------------------------

    def begin_turn(self, item: Item | None) -> None:
        """Partials from now on belong to `item` (None: no turn in progress)."""
        self._turn, self._partial_sent = item, ""

    def maybe_partial(self, now: float) -> None:
        """Start a partial decode of the turn in progress when the transcriber says it is worth it."""
        if self._turn is not None and self._partial_task is None and self.core.stt.should_partial(now):
            self._partial_task = self.core.spawn(self._partial(self._turn))

    async def _partial(self, item: Item) -> None:
        try:
            partial = await self.core.stt.partial()
            if item is self._turn and partial.stable.startswith(self._partial_sent):
                delta = partial.stable[len(self._partial_sent) :]
                if delta.strip():
                    self._partial_sent = partial.stable
                    self.core.emit(TranscriptDelta(item.id, delta))
        except EngineError as e:
            log.warning("partial transcript failed: %s", e)
        finally:
            self._partial_task = None

    # --- final transcripts ---------------------------------------------------------------------

    def speculate(self, item: Item) -> None:
        """The caller paused: start the turn's final decode now, on the audio so far."""
        if item.transcript_task is None:
            self.core.stt.speculate()
            item.transcript_task = self.core.spawn(self.core.stt.final())

    async def text_of(self, item: Item) -> tuple[str, str | None]:
        """The turn's transcript (one decode per turn, usually the speculation's) and any failure."""
        if item.transcript_task is None:
            item.transcript_task = self.core.spawn(self.core.stt.final())
        try:
            transcript = await asyncio.shield(item.transcript_task)
        except EngineError as e:
            log.warning("transcription failed: %s", e)
            return "", str(e)
        return transcript.text.strip(), None

    async def final_text(self, item: Item) -> str:
        """The turn's transcript, stored on the item (and announced once the turn is committed)."""
        text, failure = await self.text_of(item)
        if not item.ready.is_set():
            item.text, item.failure = text, failure
            item.timings["transcript"] = self.core.clock()
            item.ready.set()
        self.announce(item)
        return item.text

    def settle(self, item: Item) -> None:
        """The turn is committed: make sure its transcript is found and announced, even if no
        reply waits for it."""
        self.core.spawn(self.final_text(item))

    def announce(self, item: Item) -> None:
        """Send the transcript events once: only after `committed`, so the order is always right,
        and never for an item already deleted (rejoined by the next turn while it was decoding)."""
        if item.committed and item.ready.is_set() and not item.announced and self._kept(item):
            item.announced = True
            if item.failure is not None:
                self.core.emit(TranscriptFailed(item.id, item.failure))
            else:
                self.core.emit(TranscriptFinal(item.id, item.text))
            self.on_words(item)

    def _kept(self, item: Item) -> bool:
        return any(i is item for i in self.core.items)
