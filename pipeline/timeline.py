"""A reply's audio timeline: its 100 ms chunks in order, and which sentence each belongs to.

It answers what a reply needs to know about time: where a millisecond falls among the chunks (to
resume after a hold) and what text the first N ms of audio carried (to keep only the heard words).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.audio import PCM


@dataclass(slots=True)
class SpokenSentence:
    """A sentence and where its audio lies in the reply's audio timeline (ms)."""

    text: str
    start_ms: float
    end_ms: float | None = None
    announced: bool = False


@dataclass(slots=True)
class Chunk:
    pcm: PCM
    ms: float
    #: Index of its sentence in `Timeline.sentences`.
    sentence: int


@dataclass(slots=True)
class Timeline:
    """Audio chunks at `rate` Hz, at most `rate // 10` samples (100 ms) each."""

    rate: int
    sentences: list[SpokenSentence] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    #: Milliseconds of audio so far.
    total_ms: float = 0.0

    def begin_sentence(self, text: str) -> int:
        self.sentences.append(SpokenSentence(text, self.total_ms))
        return len(self.sentences) - 1

    def end_sentence(self, index: int) -> None:
        self.sentences[index].end_ms = self.total_ms

    def append(self, pcm: PCM, sentence: int) -> None:
        """Add audio of sentence `sentence`, cut into chunks of at most 100 ms."""
        step = self.rate // 10
        for i in range(0, len(pcm), step):
            piece = pcm[i : i + step]
            ms = len(piece) * 1000.0 / self.rate
            self.chunks.append(Chunk(piece, ms, sentence))
            self.total_ms += ms

    def chunk_at(self, ms: float) -> int:
        """The index of the chunk that plays at `ms` (len(chunks) past the end)."""
        total = 0.0
        for i, c in enumerate(self.chunks):
            if total + c.ms > ms + 0.5:
                return i
            total += c.ms
        return len(self.chunks)

    def text_until(self, ms: float) -> str:
        """The text up to `ms` of the audio (a partly heard sentence is cut proportionally)."""
        parts: list[str] = []
        for s in self.sentences:
            end = s.end_ms if s.end_ms is not None else self.total_ms
            if end <= ms:
                parts.append(s.text)
                continue
            if s.start_ms < ms and end > s.start_ms:
                n = int(len(s.text) * (ms - s.start_ms) / (end - s.start_ms))
                cut = s.text[:n]
                if n < len(s.text) and not s.text[n].isspace() and " " in cut:
                    cut = cut[: cut.rindex(" ")]
                if cut.strip():
                    parts.append(cut.strip())
            break
        return " ".join(parts)

    def release(self) -> None:
        """Let go of the audio once it is all sent (or never will be); lengths and text stay."""
        self.chunks = []
