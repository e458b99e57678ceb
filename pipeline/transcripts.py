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
            item.transcript_task = self.core.stt.speculate()

    def pin(self, item: Item) -> None:
        """The turn is over: its decode (the speculation, or one of its audio started now) becomes
        the item's own, so the next turn's reset cannot cancel it. Call before anything else
        touches the transcriber."""
        task = item.transcript_task
        if task is None or task is self.core.stt.speculation:
            item.transcript_task = self.core.stt.finish()

    async def text_of(self, item: Item) -> tuple[str, str | None]:
        """The turn's transcript and any failure, within `transcript_timeout_s`.

        Never waits longer and never leaves the item unsettled: an engine error, a decode that was
        discarded, or one that takes too long are failures (the decode runs on, unheeded).
        """
        if item.transcript_task is None:
            self.pin(item)
        task = item.transcript_task
        assert task is not None
        try:
            async with asyncio.timeout(self.core.config.transcript_timeout_s):
                transcript = await asyncio.shield(task)
        except EngineError as e:
            log.warning("transcription failed: %s", e)
            return "", str(e)
        except TimeoutError:
            log.warning(
                "transcription of %s took over %.0f s", item.id, self.core.config.transcript_timeout_s
            )
            return "", "Transcription timed out."
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise  # we are being cancelled, not the decode
            return "", "Transcription was discarded."
        except Exception as e:  # an engine's own bug is still a failed transcript: the call goes on
            log.exception("transcription of %s failed", item.id)
            return "", f"{type(e).__name__}: {e}"
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
        self.pin(item)
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
