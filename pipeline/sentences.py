"""Cut streamed LLM text into whole sentences for TTS, as early as each sentence is certain.

A sentence ends at . ! ? … 。 and their full-width forms (with any closing quotes or brackets)
followed by white space, and at a newline; never at a comma. Korean endings (다. 요. 까? 죠.)
end in the same marks. A '.' is not an end before a lowercase word ("e.g. this", "Well...
maybe"), after a known abbreviation or an initial ("Mr.", "J."), or inside a number ("3.5").
Fragments shorter than `min_chars` ("Oh!", "네.") are merged with the next sentence so the voice
does not stutter. Only the *first* sentence may be cut early, at a clause boundary, when it runs
past `first_max_chars` with no end in sight; the rest wait for their end. `flush()` returns the
tail when the stream is over.
"""

from __future__ import annotations

import re

TERMINATORS = ".!?\u2026\u3002\uff01\uff1f"
CLOSERS = "\"')]}\u2019\u201d\u300d\u300f"
CJK_TERMINATORS = "\u3002\uff01\uff1f"
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "prof", "sr", "jr", "no", "e.g", "i.e", "cf", "approx"}
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_CLAUSE = re.compile("[,;:\uff0c\u3001]\\s")


def _weight(text: str) -> int:
    """Length for the "too short" test: a Hangul or CJK character carries about two Latin letters."""
    return sum(2 if ord(ch) >= 0x2E80 else 1 for ch in text)


class SentenceSegmenter:
    """Feed text deltas with `push`; each call returns the sentences completed so far."""

    def __init__(self, *, min_chars: int = 12, first_max_chars: int = 160) -> None:
        self.min_chars = min_chars
        self.first_max_chars = first_max_chars
        self._buf = ""
        self._pending = ""  # a short sentence waiting to be merged with the next
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._find_end(final=False)
            if cut is None:
                break
            self._take(cut, out)
        if not out and not self._emitted and not self._pending and len(self._buf) > self.first_max_chars:
            # A very long first sentence: speak its first clause rather than wait for the whole.
            clauses = list(_CLAUSE.finditer(self._buf, 0, self.first_max_chars))
            if clauses:
                self._take(clauses[-1].end(), out, merge=False)
        return out

    def flush(self) -> list[str]:
        """The rest of the text, once the stream is over (may be one short sentence)."""
        out: list[str] = []
        while True:
            cut = self._find_end(final=True)
            if cut is None:
                break
            self._take(cut, out)
        tail = (self._pending + " " + self._buf.strip()).strip() if self._pending else self._buf.strip()
        self._buf, self._pending = "", ""
        if tail:
            out.append(tail)
        if len(out) > 1 and _weight(out[-1]) < self.min_chars:
            out[-2:] = [out[-2] + " " + out[-1]]
        return out

    def _take(self, cut: int, out: list[str], *, merge: bool = True) -> None:
        sentence = self._buf[:cut].strip()
        self._buf = self._buf[cut:].lstrip(" \t")
        if self._pending:
            sentence = f"{self._pending} {sentence}".strip()
            self._pending = ""
        if not sentence:
            return
        if merge and _weight(sentence) < self.min_chars:
            self._pending = sentence
            return
        out.append(sentence)
        self._emitted += 1

    def _find_end(self, *, final: bool) -> int | None:
        """Index just past the first certain sentence end in the buffer, or None."""
        buf = self._buf
        i = 0
        while i < len(buf):
            c = buf[i]
            if c == "\n":
                return i + 1
            if c not in TERMINATORS:
                i += 1
                continue
            j = i + 1
            while j < len(buf) and (buf[j] in TERMINATORS or buf[j] in CLOSERS):
                j += 1
            if j >= len(buf):
                return j if final else None
            nxt = buf[j]
            if c in CJK_TERMINATORS or buf[j - 1] in CJK_TERMINATORS:
                return j
            if not nxt.isspace():
                i = j  # "3.5", "U.S.A": not an end
                continue
            if c == "." and self._abbreviation(buf[:i]):
                i = j
                continue
            rest = buf[j:].lstrip()
            if not rest:
                # ". " at the end of what we have: the next word decides ("e.g. this" vs "Yes. This").
                if final:
                    return j
                if "." in buf[i:j] or "…" in buf[i:j]:
                    return None
                return j
            if ("." in buf[i:j] or "…" in buf[i:j]) and rest[0].isascii() and rest[0].islower():
                i = j
                continue
            return j
        return None

    @staticmethod
    def _abbreviation(before: str) -> bool:
        m = _WORD_BEFORE.search(before)
        if not m:
            return False
        word = m.group(1).lower()
        if word in ABBREVIATIONS:
            return True
        # A single capital letter: an initial ("J. F. Kennedy").
        return len(m.group(1)) == 1 and m.group(1).isupper()
