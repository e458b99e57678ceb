"""The sentence segmenter: whole sentences out of streamed LLM text, never cut in two."""

from __future__ import annotations

from pipeline.sentences import SentenceSegmenter


def stream(text: str, step: int = 3, **kw: int) -> list[str]:
    seg = SentenceSegmenter(**kw)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += seg.push(text[i : i + step])
    return out + seg.flush()


def test_english_sentences_stream_out_whole() -> None:
    """Three English sentences arrive in small deltas and leave as three whole sentences."""
    text = "Hello there, my friend. How are you feeling today? I hope the sun is out!"
    assert stream(text) == ["Hello there, my friend.", "How are you feeling today?", "I hope the sun is out!"]


def test_korean_endings() -> None:
    """Korean sentences ending in 다. 요. 까? 죠. are split at their endings."""
    text = "안녕하세요, 김 할머니. 오늘 날씨가 참 좋네요. 산책은 다녀오셨어요? 내일은 비가 온다고 하죠."
    assert stream(text, 2) == [
        "안녕하세요, 김 할머니.",
        "오늘 날씨가 참 좋네요.",
        "산책은 다녀오셨어요?",
        "내일은 비가 온다고 하죠.",
    ]


def test_never_at_commas_numbers_or_abbreviations() -> None:
    """Commas, decimals, abbreviations, initials and '...' before lowercase do not end a sentence."""
    text = "Dr. Kim said it was 3.5 degrees, e.g. cold. Well... maybe not so cold. J. F. Kennedy spoke."
    assert stream(text, 1) == [
        "Dr. Kim said it was 3.5 degrees, e.g. cold.",
        "Well... maybe not so cold.",
        "J. F. Kennedy spoke.",
    ]


def test_first_sentence_leaves_before_the_rest_arrives() -> None:
    """The first sentence is returned as soon as the next word proves it ended, not at flush."""
    seg = SentenceSegmenter()
    assert seg.push("It is a lovely morning") == []
    assert seg.push(". ") == []
    assert seg.push("Shall") == ["It is a lovely morning."]
    assert seg.flush() == ["Shall"]


def test_short_fragments_merge() -> None:
    """A very short sentence ("Oh!", "네.") is merged into the next instead of spoken alone."""
    assert stream("Oh! That is wonderful news. Yes.") == ["Oh! That is wonderful news.", "Yes."]
    assert stream("네. 잘 주무셨어요? 오늘은 뭐 하실 거예요?") == [
        "네. 잘 주무셨어요?",
        "오늘은 뭐 하실 거예요?",
    ]


def test_newlines_and_cjk_marks_end_sentences() -> None:
    """A newline or a full-width mark ends a sentence even without a space after it."""
    assert stream("First line without a stop\nSecond line here。Third one\uff01") == [
        "First line without a stop",
        "Second line here。",
        "Third one\uff01",
    ]


def test_long_first_sentence_cut_at_a_clause() -> None:
    """Only a very long first sentence is spoken early, at its last clause boundary."""
    text = (
        "When I was young we lived by the sea, and every morning my father went out in his boat, "
        "and my mother waited for him on the beach, singing the old songs of the village. Then we ate."
    )
    out = stream(text, 4, first_max_chars=120)
    assert out[0].endswith(",") and len(out[0]) <= 120
    assert " ".join(out) == text
